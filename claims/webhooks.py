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
- Postmark without it, Mailgun's parsed format: a MIME message built here from the ESP's fields
  (mime_from_fields: the headers the ESP passes on, in their order, then the bodies and the
  attachments, base64);
- other ESPs: the message anymail parsed or built, serialized.

anymail builds its own message from parsed fields before sending the signal, and raises on a
header it cannot hold (a line break in Postmark's Subject): the webhook would answer 500 and the
ESP retry until it gave up, losing the message. The views below (routed before anymail.urls) let
such an event through to the signal, whose receiver builds the raw message itself.
"""

import base64
import email.policy
import json
import re
import time
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import formataddr
from io import BytesIO
from urllib.parse import parse_qsl

from anymail.inbound import AnymailInboundMessage
from anymail.signals import AnymailInboundEvent, EventType
from anymail.utils import get_anymail_setting, get_request_basic_auth
from anymail.webhooks.mailgun import MailgunInboundWebhookView
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse, QueryDict
from django.utils.crypto import constant_time_compare
from django.utils.datastructures import MultiValueDict

from . import services
from .models import InboundMessage

INBOUND_PATH = re.compile(r"/anymail/[a-z_]+/inbound(?:_mime)?/\Z")
HEADERS = BytesHeaderParser(policy=email.policy.compat32)  # a form part's few headers, read cheaply


class InboundBodyMiddleware:
    """For the inbound webhooks only: a body up to INBOUND_MAX_BYTES (Django's own limit, 2.5 MB,
    would answer 400 to a message with one photo, and the ESP would give up on it), and a form's
    fields kept byte for byte in `request.inbound_fields`, with request.POST and request.FILES
    filled from them as Django would (so anymail's views read them as usual)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and INBOUND_PATH.search(request.path_info) and _may_post(request):
            refused = _body_read(request)
            if refused is not None:
                return refused
        return self.get_response(request)


def _may_post(request) -> bool:
    """The webhook secret, when one is set, before a large body is read into memory: anyone else
    is left to anymail, which refuses them without reading it."""
    secrets = get_anymail_setting("webhook_secret", default=[])
    secrets = [secrets] if isinstance(secrets, str) else secrets
    given = get_request_basic_auth(request)
    return not secrets or (given is not None and any(constant_time_compare(given, s) for s in secrets))


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
        request.inbound_fields = {
            name: value.encode("latin-1")
            for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        }
    return None


def _multipart_read(request, body: bytes) -> None:
    """Split multipart/form-data (RFC 7578) at its boundary without decoding any field, and
    without Django's cap on the size of a field."""
    parts = _form_parts(body, request.META["CONTENT_TYPE"])
    if parts is None:
        return  # not a form we can read: Django's own parsing will say what is wrong
    fields, post, files = {}, QueryDict(mutable=True, encoding=request.encoding), MultiValueDict()
    for headers, data in parts:
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        if str(headers.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
            data = base64.b64decode(data)
        filename = headers.get_filename()
        if filename is not None:
            files.appendlist(name, SimpleUploadedFile(filename, data, headers.get_content_type()))
        else:
            fields[name] = data
            post.appendlist(name, data.decode(request.encoding or settings.DEFAULT_CHARSET, "replace"))
    post._mutable = False
    request.inbound_fields, request._post, request._files = fields, post, files


def _form_parts(body: bytes, content_type: str) -> list[tuple[Message, bytes]] | None:
    """Each part's headers and its bytes, exactly as sent (the CRLF before a delimiter belongs to it)."""
    form = Message()
    form["Content-Type"] = content_type
    boundary = form.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        return None
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts  # the close delimiter
        chunk = chunk.partition(b"\r\n")[2]  # the rest of the delimiter line (transport padding)
        head, _, data = chunk.partition(b"\r\n\r\n") if not chunk.startswith(b"\r\n") else (b"", b"", chunk[2:])
        parts.append((HEADERS.parsebytes(head + b"\r\n\r\n"), data))
    return None  # no close delimiter: cut short


def inbound_received(sender, event, esp_name: str, **kwargs) -> None:
    """anymail's `inbound` signal: keep the message exactly as received and enqueue its parsing.
    The incident is the one open for claims (of several, the newest)."""
    raw, envelope_sender = inbound_raw(event, esp_name)
    event_id = event.event_id if isinstance(event.event_id, str) else None
    services.inbound_store(
        raw=raw,
        source=InboundMessage.Source.WEBHOOK,
        esp=esp_name,
        place=f"event {event_id}" if event_id else "",
        envelope_sender=envelope_sender,
        incident=_incident_open(),
    )


OPEN_INCIDENT_SECONDS = 10.0
_open_incident: dict = {}


def _incident_open():
    """The incident open for claims, looked up at most every OPEN_INCIDENT_SECONDS by a process:
    after an incident the webhook is posted hundreds of times a second, and the answer changes
    once in weeks (a message that comes just after claims close is judged by the intake task)."""
    now = time.monotonic()
    if _open_incident.get("until", 0.0) < now:
        _open_incident.update(incident=services.incident_open_for_claims(), until=now + OPEN_INCIDENT_SECONDS)
    return _open_incident["incident"]


def forget_open_incident() -> None:
    _open_incident.clear()


def inbound_raw(event, esp_name: str) -> tuple[bytes, str | None]:
    """The message's raw bytes, and the envelope sender the ESP reports (None: not told)."""
    if esp_name == "Mailgun":
        return _mailgun_raw(event.esp_event), event.esp_event.POST.get("sender")
    if esp_name == "Postmark":
        return _postmark_raw(event.esp_event), _postmark_envelope_sender(event.esp_event)
    try:  # other ESPs: the message anymail built or parsed
        return event.message.as_bytes(policy=email.policy.SMTP), event.message.envelope_sender
    except Exception:
        return event.message.as_string().encode("utf-8", "surrogateescape"), event.message.envelope_sender


def _mailgun_raw(request) -> bytes:
    fields = getattr(request, "inbound_fields", None) or {}
    if "body-mime" in fields:
        return fields["body-mime"]
    content_ids = {field: cid for cid, field in json.loads(request.POST.get("content-id-map") or "{}").items()}
    files = [(name, upload) for name, uploads in request.FILES.lists() for upload in uploads]
    return mime_from_fields(
        headers=[(name, value) for name, value in json.loads(request.POST.get("message-headers") or "[]")],
        text=request.POST.get("body-plain"),
        html=request.POST.get("body-html"),
        attachments=[
            (upload.name, upload.content_type, _content(upload), content_ids.get(name)) for name, upload in files
        ],
    )


def _content(upload) -> bytes:
    upload.seek(0)  # anymail has read it already
    return upload.read()


def _postmark_raw(payload: dict) -> bytes:
    if payload.get("RawEmail"):
        return payload["RawEmail"].encode("utf-8", "surrogateescape")
    headers = [(h["Name"], h["Value"]) for h in payload.get("Headers") or []]
    if headers and headers[0][0].lower() == "return-path":
        headers = headers[1:]  # Postmark puts the envelope sender first; the message never held it
    own = [
        ("From", _addresses([payload.get("FromFull")])),
        ("To", _addresses(payload.get("ToFull"))),
        ("Cc", _addresses(payload.get("CcFull"))),
        ("Subject", payload.get("Subject")),
        ("Date", payload.get("Date")),
        ("Reply-To", payload.get("ReplyTo")),
    ]
    attachments = [
        (
            a.get("Name"),
            a.get("ContentType") or "application/octet-stream",
            base64.b64decode(a.get("Content") or a.get("Data") or ""),
            a.get("ContentID"),
        )
        for a in payload.get("Attachments") or []
    ]
    return mime_from_fields(
        headers=headers + [(name, value) for name, value in own if value],
        text=payload.get("TextBody"),
        html=payload.get("HtmlBody"),
        attachments=attachments,
    )


def _postmark_envelope_sender(payload: dict) -> str | None:
    headers = payload.get("Headers") or []
    if headers and headers[0].get("Name", "").lower() == "return-path":
        return headers[0].get("Value", "").strip().removeprefix("<").removesuffix(">")
    return None


def _addresses(full: list | None) -> str:
    """Postmark's {Email, Name} objects as an address list (names RFC 2047-encoded, line breaks gone)."""
    return ", ".join(formataddr((_one_line(a.get("Name") or ""), a.get("Email") or "")) for a in full or [] if a)


# --- raw MIME from an ESP's parsed fields ------------------------------------------------------

BODY_HEADERS = {"content-type", "content-transfer-encoding", "mime-version"}
ADDRESS_HEADERS = {"from", "to", "cc", "bcc", "reply-to", "sender"}
HEADER_NAME = re.compile(r"[!-9;-~]+\Z")
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def mime_from_fields(
    *,
    headers: list[tuple[str, str]],
    text: str | None,
    html: str | None,
    attachments: list[tuple[str | None, str, bytes, str | None]],
) -> bytes:
    """A MIME message from an ESP's parsed fields, for ESPs that send no raw message: their
    headers in their order (an Authentication-Results stays where it was), in UTF-8 as RFC 6532
    allows, a value with a line break as RFC 2047 encoded words (kept whole; never a header of its
    own); then the text and HTML bodies and the attachments (base64), as the email package writes
    them. anymail's own construction writes binary attachments unencoded, so their bytes change."""
    body = EmailMessage(policy=email.policy.SMTP)
    if text or not html:
        body.set_content(_text(text or ""), charset="utf-8")
        if html:
            body.add_alternative(_text(html), subtype="html", charset="utf-8")
    else:
        body.set_content(_text(html), subtype="html", charset="utf-8")
    for filename, content_type, content, content_id in attachments:
        _attach(body, filename, content_type, content, content_id)
    lines = [
        _header_line(name, str(value))
        for name, value in headers
        if HEADER_NAME.match(name) and name.lower() not in BODY_HEADERS
    ]
    return b"".join(lines) + body.as_bytes()


def _attach(body: EmailMessage, filename: str | None, content_type: str, content: bytes, content_id: str | None):
    maintype, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    if not (HEADER_NAME.match(maintype or "-") and HEADER_NAME.match(subtype or "-")) or maintype == "multipart":
        maintype, subtype = "application", "octet-stream"
    options = {"filename": _one_line(filename) or None, "disposition": "inline" if content_id else "attachment"}
    if content_id:
        options["cid"] = "<" + _one_line(content_id).strip("<>") + ">"
    if maintype == "message":  # a forwarded message: kept as one, so its text counts
        body.add_attachment(BytesParser(policy=email.policy.default).parsebytes(content), **options)
    else:
        body.add_attachment(content, maintype=maintype, subtype=subtype, **options)


def _header_line(name: str, value: str) -> bytes:
    value = _text(value)
    if CONTROLS.search(value):
        if name.lower() in ADDRESS_HEADERS:
            value = _one_line(value)  # an address list cannot be encoded words; its names lose the break
        else:
            return f"{name}: {_encoded_words(value)}\r\n".encode("ascii")
    return f"{name}: {value}\r\n".encode()


def _encoded_words(value: str) -> str:
    """RFC 2047 `=?utf-8?b?...?=` words of at most 45 bytes each, split between characters."""
    words, chunk = [], ""
    for char in value:
        if len((chunk + char).encode()) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words)


def _one_line(value: str | None) -> str:
    return re.sub(r"\s+", " ", CONTROLS.sub(" ", _text(value or ""))).strip()


def _text(value: str) -> str:
    """Text the email package can write: a lone surrogate (JSON allows one) becomes U+FFFD."""
    return value.encode("utf-8", "replace").decode("utf-8")


# --- anymail's views, letting through what anymail cannot build ----------------------------------


class _KeptWhenAnymailCannotBuild:
    def esp_to_anymail_event(self, esp_event):
        try:
            return super().esp_to_anymail_event(esp_event)
        except ValueError:  # "Header values may not contain linefeed or carriage return characters"
            event_id = esp_event.get("MessageID") if isinstance(esp_event, dict) else esp_event.POST.get("token")
            return AnymailInboundEvent(
                event_type=EventType.INBOUND,
                timestamp=None,
                event_id=event_id,
                esp_event=esp_event,
                message=AnymailInboundMessage(),
            )


class MailgunInboundView(_KeptWhenAnymailCannotBuild, MailgunInboundWebhookView):
    pass


class PostmarkInboundView(_KeptWhenAnymailCannotBuild, PostmarkInboundWebhookView):
    pass
