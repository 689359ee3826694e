"""The ESPs' inbound webhooks (email-intake.md, "Two ways in"): django-anymail's views at
/anymail/<esp>/inbound/ check the webhook secret (HTTP basic auth) and the ESP's signature
(Mailgun's), then send anymail's `inbound` signal; `inbound_received` keeps the raw message and
enqueues its parsing, nothing more. A request that fails authentication never reaches it (anymail
answers 400) and stores nothing; a storage failure answers 500, and the ESP posts it again later.

The raw bytes, per ESP:
- Mailgun, route URL ending in `inbound_mime/`: the `body-mime` field, byte for byte (read by
  InboundBodyMiddleware, below, not through Django's form parsing, which would replace bytes that
  are not UTF-8);
- Postmark with "Include raw email content" on: `RawEmail` (a JSON string, so encoded as UTF-8);
- otherwise (Postmark without it, Mailgun's parsed format, other ESPs): the MIME message anymail
  builds from the ESP's parsed fields (`AnymailInboundMessage.construct`: the headers the ESP
  passes on, in their order, the text and HTML bodies and the attachments), serialized.
"""

import email.policy
import re
from email.parser import BytesParser
from io import BytesIO
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse, QueryDict
from django.utils.datastructures import MultiValueDict

from . import services
from .models import InboundMessage

INBOUND_PATH = re.compile(r"/anymail/[a-z_]+/inbound(?:_mime)?/\Z")


class InboundBodyMiddleware:
    """For the inbound webhooks only: a body up to INBOUND_MAX_BYTES (Django's own limit, 2.5 MB,
    would answer 400 to a message with one photo, and the ESP would give up on it), and a form's
    fields kept byte for byte in `request.inbound_fields`, with request.POST and request.FILES
    filled from them as Django would (so anymail's views read them as usual)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and INBOUND_PATH.search(request.path_info):
            refused = _body_read(request)
            if refused is not None:
                return refused
        return self.get_response(request)


def _body_read(request) -> HttpResponse | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.INBOUND_MAX_BYTES:
        return HttpResponse("message too large", status=413, content_type="text/plain")
    body = request.read(settings.INBOUND_MAX_BYTES + 1)
    if len(body) > settings.INBOUND_MAX_BYTES:
        return HttpResponse("message too large", status=413, content_type="text/plain")
    # What HttpRequest.body keeps once read: anymail's views and Django's parsing read it from here.
    request._body, request._stream = body, BytesIO(body)
    if request.content_type == "multipart/form-data":
        _multipart_read(request, body)
    elif request.content_type == "application/x-www-form-urlencoded":
        request.inbound_fields = {name: value.encode("latin-1") for name, value in
                                  parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")}
    return None


def _multipart_read(request, body: bytes) -> None:
    """multipart/form-data is MIME (RFC 7578): the email package splits it without decoding any
    field, and without Django's cap on the size of a field."""
    head = b"Content-Type: " + request.META["CONTENT_TYPE"].encode("latin-1", "replace") + b"\r\n\r\n"
    form = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not form.is_multipart():
        return  # not a form after all: Django's own parsing will say so
    fields, post, files = {}, QueryDict(mutable=True, encoding=request.encoding), MultiValueDict()
    for part in form.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files.appendlist(name, SimpleUploadedFile(part.get_filename(), data, part.get_content_type()))
        else:
            fields[name] = data
            post.appendlist(name, data.decode(request.encoding or settings.DEFAULT_CHARSET, "replace"))
    post._mutable = False
    request.inbound_fields, request._post, request._files = fields, post, files


def inbound_received(sender, event, esp_name: str, **kwargs) -> None:
    """anymail's `inbound` signal: keep the message exactly as received and enqueue its parsing.
    The incident is the one open for claims (of several, the newest)."""
    raw = inbound_raw(event, esp_name)
    event_id = event.event_id if isinstance(event.event_id, str) else None
    services.inbound_store(raw=raw, source=InboundMessage.Source.WEBHOOK, esp=esp_name,
                           place=f"event {event_id}" if event_id else "",
                           envelope_sender=event.message.envelope_sender,
                           incident=services.incident_open_for_claims())


def inbound_raw(event, esp_name: str) -> bytes:
    """The message's raw bytes: as the ESP sent them where it sends them, else as anymail built
    the message from the ESP's parsed fields."""
    fields = getattr(event.esp_event, "inbound_fields", None) or {}
    if esp_name == "Mailgun" and "body-mime" in fields:
        return fields["body-mime"]
    if esp_name == "Postmark" and isinstance(event.esp_event, dict) and event.esp_event.get("RawEmail"):
        return event.esp_event["RawEmail"].encode("utf-8", "surrogateescape")
    try:
        return event.message.as_bytes(policy=email.policy.SMTP)
    except Exception:  # a value the generator will not write: keep the text it holds
        return event.message.as_string(policy=email.policy.SMTP).encode("utf-8", "surrogateescape")
