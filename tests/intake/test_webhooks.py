"""The ESPs' inbound webhooks, posted as each ESP posts them (payloads shaped after anymail's own
tests and the ESPs' documentation): authenticated as anymail does, the raw message kept exactly,
nothing stored without good credentials, an error (so the ESP posts again) when storing fails."""

import base64
import hashlib
import hmac
import json
import secrets
import time

import pytest
from django.db import OperationalError, connection
from django.test import Client

from claims.models import InboundMessage

from .conftest import AUTHSERV_ID, compose, corpus_bytes, two_megabyte_message

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "anymail-user:anymail-password"
SIGNING_KEY = "mailgun-webhook-signing-key"
MAILGUN_URL = "/anymail/mailgun/inbound_mime/"
POSTMARK_URL = "/anymail/postmark/inbound/"


@pytest.fixture(autouse=True)
def anymail_secrets(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


def basic_auth(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def multipart(fields: dict[str, bytes | str | tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """multipart/form-data as Mailgun writes it; field values are sent byte for byte."""
    boundary = secrets.token_hex(16)
    body = b""
    for name, value in fields.items():
        if isinstance(value, tuple):  # a file: (name, content, content type)
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\nContent-Type: {value[2]}\r\n'
            )
            value = value[1]
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
        body += f"--{boundary}\r\n{head}\r\n".encode() + (value.encode() if isinstance(value, str) else value) + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def mailgun_post(client, fields: dict, *, key: str = SIGNING_KEY, credentials: str = SECRET, url: str = MAILGUN_URL):
    token, timestamp = secrets.token_hex(25), str(int(time.time()))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    body, content_type = multipart(
        {
            "token": token,
            "timestamp": timestamp,
            "signature": signature,
            "recipient": "support@claimdesk.example",
            **fields,
        }
    )
    return client.post(url, data=body, content_type=content_type, HTTP_AUTHORIZATION=basic_auth(credentials))


def postmark_post(client, payload: dict, *, credentials: str = SECRET):
    return client.post(
        POSTMARK_URL,
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(credentials),
    )


def postmark_payload(**changes) -> dict:
    """Postmark's inbound JSON (its documentation's example, our claimant and our server's verdict)."""
    return {
        "FromName": "Ann Claimant",
        "MessageStream": "inbound",
        "From": "user100056@example.com",
        "FromFull": {"Email": "user100056@example.com", "Name": "Ann Claimant", "MailboxHash": ""},
        "To": "support@claimdesk.example",
        "ToFull": [{"Email": "support@claimdesk.example", "Name": "", "MailboxHash": ""}],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": "support@claimdesk.example",
        "Subject": "Liquidated on SOL-PERP",
        "MessageID": "22c74902-a0c1-4511-804f-341342852c90",
        "ReplyTo": "",
        "MailboxHash": "",
        "Date": "Thu, 3 Jul 2025 14:01:00 +0000",
        "TextBody": "I was liquidated on SOL-PERP, trade 982069. My account is 100056.",
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Tag": "",
        "Headers": [
            {"Name": "Return-Path", "Value": "<user100056@example.com>"},
            {"Name": "Authentication-Results", "Value": f"{AUTHSERV_ID}; dmarc=pass header.from=example.com"},
            {"Name": "X-Spam-Status", "Value": "No"},
            {"Name": "MIME-Version", "Value": "1.0"},
            {"Name": "Message-ID", "Value": "<pm-0001@example.com>"},
        ],
        "Attachments": [
            {
                "Name": "fill.pdf",
                "ContentType": "application/pdf",
                "ContentLength": 9,
                "Content": base64.b64encode(b"%PDF-1.4\n").decode(),
            }
        ],
        **changes,
    }


def test_mailgun_raw_mime_is_kept_byte_for_byte_and_parsed(email_incident, client):
    raw = corpus_bytes("02-zh-gb2312-label-gbk-bytes.eml")  # 8-bit GBK bytes under a gb2312 label

    response = mailgun_post(client, {"sender": "user100057@example.com", "body-mime": raw})

    message = InboundMessage.objects.get()
    assert response.status_code == 200
    assert bytes(message.raw) == raw and message.sha256 == hashlib.sha256(raw).hexdigest()
    assert (message.source, message.esp, message.envelope_sender) == ("webhook", "Mailgun", "user100057@example.com")
    assert (message.outcome, message.user_id, message.incident_id) == ("new_claim", 100057, email_incident.id)


def test_mailgun_accepts_a_message_larger_than_djangos_own_limit(email_incident, client, settings):
    raw = two_megabyte_message()[0]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

    response = mailgun_post(client, {"sender": "user100083@example.com", "body-mime": raw})

    assert response.status_code == 200
    assert bytes(InboundMessage.objects.get().raw) == raw


def test_mailgun_refuses_a_message_larger_than_inbound_max_bytes(email_incident, client, settings):
    settings.INBOUND_MAX_BYTES = 1000

    response = mailgun_post(client, {"sender": "user100056@example.com", "body-mime": compose(body="x" * 2000)})

    assert response.status_code == 413
    assert not InboundMessage.objects.exists()


def test_mailgun_parsed_format_is_kept_as_the_message_anymail_builds(email_incident, client):
    headers = [
        ["From", "Ann <user100056@example.com>"],
        ["To", "support@claimdesk.example"],
        ["Subject", "Liquidated"],
        ["Message-Id", "<mg-parsed@example.com>"],
        ["Authentication-Results", f"{AUTHSERV_ID}; dmarc=pass header.from=example.com"],
    ]

    response = mailgun_post(
        client,
        {
            "sender": "user100056@example.com",
            "message-headers": json.dumps(headers),
            "body-plain": "I was liquidated on SOL-PERP, trade 982069.",
            "attachment-count": "1",
            "attachment-1": ("fill.png", b"\x89PNG\r\n\x1a\nimage", "image/png"),
        },
        url="/anymail/mailgun/inbound/",
    )

    message = InboundMessage.objects.select_related("claim").get()
    assert response.status_code == 200
    assert (message.outcome, message.user_id, message.message_id) == ("new_claim", 100056, "mg-parsed@example.com")
    assert message.attachments[0]["filename"] == "fill.png"
    assert message.claim.attachments.get().original_name == "fill.png"


@pytest.mark.parametrize(
    "key, credentials",
    [
        ("not-the-signing-key", SECRET),  # a forged signature
        (SIGNING_KEY, "anymail-user:wrong"),  # the webhook secret wrong
    ],
)
def test_mailgun_with_bad_credentials_stores_nothing(email_incident, client, key, credentials):
    response = mailgun_post(client, {"body-mime": compose()}, key=key, credentials=credentials)

    assert response.status_code == 400
    assert not InboundMessage.objects.exists()


def test_postmark_raw_email_is_kept(email_incident, client):
    raw = compose(message_id="<pm-raw@example.com>").decode()

    response = postmark_post(client, postmark_payload(RawEmail=raw))

    message = InboundMessage.objects.get()
    assert response.status_code == 200
    assert bytes(message.raw) == raw.encode()
    assert (message.esp, message.place, message.outcome) == (
        "Postmark",
        "event 22c74902-a0c1-4511-804f-341342852c90",
        "new_claim",
    )


def test_postmark_without_raw_email_is_kept_as_mime_built_from_its_json(email_incident, client):
    payload = postmark_payload(
        Subject="爆仓 SOL-PERP liquidated",
        FromFull={"Email": "user100056@example.com", "Name": "李 Ann", "MailboxHash": ""},
    )

    response = postmark_post(client, payload)

    message = InboundMessage.objects.select_related("claim").get()
    assert response.status_code == 200
    assert (message.outcome, message.user_id, message.message_id) == ("new_claim", 100056, "pm-0001@example.com")
    assert (message.from_name, message.subject) == ("李 Ann", "爆仓 SOL-PERP liquidated")
    assert message.claim.trade_id == 982069
    assert message.attachments == [
        {
            "filename": "fill.pdf",
            "contentType": "application/pdf",
            "size": 9,
            "sha256": hashlib.sha256(b"%PDF-1.4\n").hexdigest(),
            "isInline": False,
            "isBroken": False,
        }
    ]


def test_postmark_posting_the_same_event_again_receives_it_once(email_incident, client):
    postmark_post(client, postmark_payload())

    response = postmark_post(client, postmark_payload())

    assert response.status_code == 200
    assert InboundMessage.objects.count() == 1


def test_postmark_bounce_with_an_empty_envelope_sender_is_ignored(email_incident, client):
    headers = [{"Name": "Return-Path", "Value": "<>"}, *postmark_payload()["Headers"][1:]]

    postmark_post(client, postmark_payload(Headers=headers))

    message = InboundMessage.objects.get()
    assert (message.envelope_sender, message.outcome, message.ignored_reason) == ("", "ignored", "dsn")


def test_postmark_with_a_bad_secret_stores_nothing(email_incident, client):
    response = postmark_post(client, postmark_payload(), credentials="anymail-user:wrong")

    assert response.status_code == 400
    assert not InboundMessage.objects.exists()


def test_postmark_subject_with_line_breaks_is_kept_and_never_reaches_an_outgoing_header(
    email_incident, client, mailoutbox
):
    response = postmark_post(client, postmark_payload(Subject="Hi\r\nBcc: victim@evil.example"))

    message = InboundMessage.objects.get()
    assert response.status_code == 200
    assert (message.outcome, message.subject.split()) == ("new_claim", ["Hi", "Bcc:", "victim@evil.example"])
    assert b"\r\nBcc:" not in bytes(message.raw)  # kept whole, as encoded words
    assert mailoutbox and all(m.message().get_all("Bcc") is None for m in mailoutbox)


def test_a_storage_failure_answers_an_error_so_the_esp_posts_again(email_incident):
    def refuse(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith('INSERT INTO "CLAIMS_INBOUNDMESSAGE"'):
            raise OperationalError("could not extend file: No space left on device")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        response = postmark_post(Client(raise_request_exception=False), postmark_payload())

    assert response.status_code == 500
    assert not InboundMessage.objects.exists()
