"""E-mail received as staff see it: the admin (escaped, raw bytes as downloads, parsing again)
and GET /api/inbound-messages/."""

import hashlib
from unittest import mock

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from rest_framework.test import APIClient

from claims.api_auth import token_digest
from claims.models import ApiClient, AuditRecord, InboundMessage
from claims.selectors import inbound_export_line

from ..factories import StaffFactory
from .conftest import compose, corpus_bytes, receive

pytestmark = pytest.mark.django_db(transaction=True)

MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def marked_up(email_incident) -> InboundMessage:
    raw = compose(
        sender=f'"{MARKUP}" <user100056@example.com>',
        subject=MARKUP,
        body=f"{MARKUP}\nI was liquidated on SOL-PERP, trade 982069.",
    )
    return receive(raw, "markup", email_incident)


def login(client, username: str, *roles: str):
    client.force_login(StaffFactory(username=username, roles=list(roles)))


def test_markup_from_a_message_is_escaped_in_the_admin(client, marked_up):
    login(client, "ann", "support")

    pages = [
        client.get("/admin/claims/inboundmessage/"),
        client.get(f"/admin/claims/inboundmessage/{marked_up.id}/change/"),
    ]

    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert" in html
    assert f"claim #{InboundMessage.objects.get(id=marked_up.id).claim_id}" in pages[1].content.decode()


def test_the_raw_message_and_its_attachments_download_as_octet_stream(client, email_incident):
    message = receive(corpus_bytes("10-en-pdf-attachment.eml"), "10.eml", email_incident)
    login(client, "ann", "support")

    raw = client.get(f"/admin/claims/inboundmessage/{message.id}/raw/")
    attachment = client.get(f"/admin/claims/inboundmessage/{message.id}/attachment/0/")

    kept = InboundMessage.objects.get(id=message.id).attachments[0]
    assert raw.content == corpus_bytes("10-en-pdf-attachment.eml")
    assert (raw["Content-Type"], raw["X-Content-Type-Options"]) == ("application/octet-stream", "nosniff")
    assert raw["Content-Disposition"].startswith("attachment;")
    assert hashlib.sha256(attachment.content).hexdigest() == kept["sha256"]
    assert attachment["Content-Type"] == "application/octet-stream"
    assert client.get(f"/admin/claims/inboundmessage/{message.id}/attachment/7/").status_code == 404


def test_support_parses_an_unparseable_message_again_after_a_fix(client, email_incident):
    with mock.patch("claims.services.inbound.claim_create", side_effect=RuntimeError("bug")):
        message = receive(corpus_bytes("01-en-liquidation-verified.eml"), "01.eml", email_incident)
    login(client, "ann", "support")

    response = client.post(
        "/admin/claims/inboundmessage/", {"action": "parse_again", ACTION_CHECKBOX_NAME: [str(message.id)]}, follow=True
    )

    message = InboundMessage.objects.get(id=message.id)
    assert "1 message(s) enqueued" in response.content.decode()
    assert (message.outcome, message.user_id, message.problems) == ("new_claim", 100056, [])
    assert AuditRecord.objects.filter(
        object_type="inbound_message", object_id=message.id, actor="ann", action="parse_again"
    ).exists()


def test_a_duplicate_concerns_what_its_original_became_once_parsed_again(client, email_incident):
    with mock.patch("claims.services.inbound.claim_create", side_effect=RuntimeError("bug")):
        original = receive(corpus_bytes("01-en-liquidation-verified.eml"), "01.eml", email_incident)
    copy = receive(corpus_bytes("39-duplicate-message-id.eml"), "39.eml", email_incident)
    login(client, "ann", "support")

    client.post("/admin/claims/inboundmessage/", {"action": "parse_again", ACTION_CHECKBOX_NAME: [str(original.id)]})

    original = InboundMessage.objects.select_related("claim").get(id=original.id)
    line = inbound_export_line(InboundMessage.objects.get(id=copy.id))
    assert (original.outcome, line["outcome"]) == ("new_claim", "duplicate")
    assert (line["userId"], line["claim"]) == (100056, str(original.claim.public_id))


def test_every_unparseable_message_is_parsed_again_and_no_other(client, email_incident):
    broken = receive(corpus_bytes("42-broken-multipart-without-boundary.eml"), "42.eml", email_incident)
    decided = receive(compose(), "fine", email_incident)
    login(client, "ann", "approver")

    client.post("/admin/claims/inboundmessage/parse-again-unparseable/")

    broken, decided = (InboundMessage.objects.get(id=m.id) for m in (broken, decided))
    assert (broken.outcome, broken.attempts) == ("unparseable_kept", 1)
    assert decided.attempts == 1
    assert AuditRecord.objects.filter(object_type="inbound_message").count() == 1


def test_finance_may_not_parse_messages_again(client, email_incident):
    broken = receive(corpus_bytes("42-broken-multipart-without-boundary.eml"), "42.eml", email_incident)
    login(client, "fay", "finance")

    response = client.post("/admin/claims/inboundmessage/parse-again-unparseable/", follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "fay may not parse messages again: only approver or support may (fay holds finance)"
    ]
    assert not AuditRecord.objects.filter(object_type="inbound_message", object_id=broken.id).exists()


def api_client(scopes: list[str]) -> APIClient:
    ApiClient.objects.create(name="tool", token_hash=token_digest("tool-token"), scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token tool-token")
    return client


def test_the_staff_api_lists_the_export_lines_in_the_order_received(email_incident):
    messages = [receive(compose(message_id=f"<api-{n}@example.com>"), f"api-{n}", email_incident) for n in range(2)]

    bounce = receive(corpus_bytes("29-bounce-from-mailer-daemon.eml"), "29.eml", email_incident)
    client = api_client(["staff"])

    everything = client.get("/api/inbound-messages/", {"incident": email_incident.slug}).json()
    ignored = client.get("/api/inbound-messages/", {"outcome": "ignored"}).json()

    assert [line["id"] for line in everything["results"]] == [messages[0].id, messages[1].id, bounce.id]
    assert everything["results"][0] == {
        "id": messages[0].id,
        "receivedAt": everything["results"][0]["receivedAt"],
        **inbound_export_line(InboundMessage.objects.select_related("claim").get(id=messages[0].id)),
    }
    assert [(line["id"], line["ignoredReason"]) for line in ignored["results"]] == [(bounce.id, "dsn")]


def test_the_front_end_may_not_read_the_email_received(email_incident):
    receive(compose(), "one", email_incident)

    response = api_client(["claims"]).get("/api/inbound-messages/")

    assert response.status_code == 403
