"""The intake task: repeated and out-of-order deliveries, failures, threading, answers, and what
from a message may reach an outgoing e-mail."""

from datetime import timedelta
from email import message_from_bytes
from unittest import mock

import pytest
from django.core import mail
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone

from claims import tasks
from claims.inbound import parse, peek_message_id
from claims.models import AuditRecord, Claim, ClaimAttachment, InboundMessage, Incident, Notification
from claims.notifications import Thread, notification_send, notify
from claims.services.inbound import MAX_ATTEMPTS, inbound_requeue
from tests.inbound.corpus import corpus_files

from .conftest import compose, corpus_bytes, receive

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot(message_id: int) -> dict:
    message = InboundMessage.objects.filter(id=message_id).values().get()
    return {
        "message": message,
        "claims": list(Claim.objects.values()),
        "records": AuditRecord.objects.count(),
        "notifications": list(Notification.objects.values("key", "status")),
        "attachments": ClaimAttachment.objects.count(),
        "mail": len(mail.outbox),
    }


def outcome(message: InboundMessage) -> str:
    return InboundMessage.objects.get(id=message.id).outcome


def test_peek_message_id_reads_what_parse_reads():
    raws = [path.read_bytes() for path in corpus_files()]

    assert [peek_message_id(raw) for raw in raws] == [parse(raw).message_id for raw in raws]


def test_a_repeated_delivery_of_the_task_changes_nothing(email_incident):
    message = receive(corpus_bytes("10-en-pdf-attachment.eml"), "10.eml", email_incident)
    before = snapshot(message.id)

    # Run as a worker runs it (apply), not through .delay().get(): Celery's guard against joining
    # inside a task is a process global, which eager tasks on the live server's threads in
    # earlier tests can leave set.
    result = tasks.inbound_parse_task.apply(kwargs={"message_id": message.id}).result

    assert result is None
    assert snapshot(message.id) == before
    assert before["message"]["outcome"] == "new_claim" and before["attachments"] == 1


def test_a_reply_decided_before_the_message_it_answers_is_still_a_reply(email_incident):
    with mock.patch.object(tasks.inbound_parse_task, "delay"):  # the broker: nothing runs yet
        original = receive(corpus_bytes("01-en-liquidation-verified.eml"), "01.eml", email_incident)
        reply = receive(corpus_bytes("13-en-reply-gmail.eml"), "13.eml", email_incident)

    tasks.inbound_parse_task.apply(kwargs={"message_id": reply.id})

    original, reply = (InboundMessage.objects.get(id=m.id) for m in (original, reply))
    assert (original.outcome, reply.outcome) == ("new_claim", "reply")
    assert reply.claim_id == original.claim_id


def test_a_copy_decided_before_its_original_is_the_duplicate(email_incident):
    with mock.patch.object(tasks.inbound_parse_task, "delay"):
        original = receive(corpus_bytes("40-no-message-id.eml"), "40.eml", email_incident)
        copy = receive(corpus_bytes("41-no-message-id-byte-identical-copy.eml"), "41.eml", email_incident)

    tasks.inbound_parse_task.apply(kwargs={"message_id": copy.id})
    tasks.inbound_parse_task.apply(kwargs={"message_id": original.id})

    original, copy = (InboundMessage.objects.get(id=m.id) for m in (original, copy))
    assert (original.outcome, copy.outcome) == ("new_claim", "duplicate")
    assert (copy.duplicate_of_id, copy.claim_id, copy.user_id) == (original.id, original.claim_id, 100072)
    assert Claim.objects.count() == 1


def test_a_reply_to_our_acknowledgement_alone_finds_the_claim(email_incident):
    first = receive(compose(message_id="<first@example.com>"), "first", email_incident)
    acknowledgement = Notification.objects.get(
        claim_id=InboundMessage.objects.get(id=first.id).claim_id, kind="acknowledgement"
    )

    reply = receive(
        compose(
            message_id="<second@example.com>",
            subject="Re: My liquidation",
            headers={"In-Reply-To": f"<{acknowledgement.message_id}>"},
            body="Also order 5550009.",
        ),
        "second",
        email_incident,
    )

    reply = InboundMessage.objects.get(id=reply.id)
    assert reply.outcome == "reply"
    assert reply.claim_id == acknowledgement.claim_id


def test_a_reply_to_a_merged_claim_reaches_the_claim_it_was_merged_into(email_incident):
    first = receive(compose(message_id="<m1@example.com>"), "m1", email_incident)
    again = receive(compose(message_id="<m2@example.com>"), "m2", email_incident)  # the same references
    merged = InboundMessage.objects.get(id=again.id).claim

    reply = receive(
        compose(message_id="<m3@example.com>", headers={"In-Reply-To": "<m2@example.com>"}, body="One more detail."),
        "m3",
        email_incident,
    )

    assert merged.status == Claim.Status.MERGED
    assert InboundMessage.objects.get(id=reply.id).claim_id == InboundMessage.objects.get(id=first.id).claim_id


def test_a_reply_whose_sender_is_not_verified_is_judged_on_its_own(email_incident):
    receive(compose(message_id="<v1@example.com>"), "v1", email_incident)

    forged = receive(
        compose(
            message_id="<v2@example.com>",
            verified=False,
            headers={"In-Reply-To": "<v1@example.com>"},
            body="Pay this to my new wallet.",
        ),
        "v2",
        email_incident,
    )

    forged = InboundMessage.objects.get(id=forged.id)
    assert (forged.outcome, forged.claim.status) == ("unverified", Claim.Status.UNVERIFIED)


def test_a_failure_of_any_kind_keeps_the_message_with_what_its_headers_tell(email_incident):
    with mock.patch("claims.services.inbound.claim_create", side_effect=RuntimeError("disk on fire")):
        message = receive(corpus_bytes("01-en-liquidation-verified.eml"), "01.eml", email_incident)

    message = InboundMessage.objects.get(id=message.id)
    assert (message.outcome, message.user_id, message.claim_id) == ("unparseable_kept", 100056, None)
    assert (message.from_address, message.message_id) == ("user100056@example.com", "claim-0001@example.com")
    assert message.problems == ["the intake failed: RuntimeError: disk on fire"]
    assert not Claim.objects.exists() and not mail.outbox


def test_a_failing_database_is_retried_a_bounded_number_of_times_then_the_message_is_kept(email_incident):
    with mock.patch.object(tasks.inbound_parse_task, "delay"):
        message = receive(corpus_bytes("01-en-liquidation-verified.eml"), "01.eml", email_incident)
    retried = 0

    with mock.patch("claims.services.inbound._decide", side_effect=OperationalError("server closed the connection")):
        for _ in range(MAX_ATTEMPTS + 3):  # each a delivery of the task, as the worker retries it
            try:
                tasks.inbound_parse_task.run(message_id=message.id)
            except OperationalError:
                retried += 1

    message = InboundMessage.objects.get(id=message.id)
    assert (retried, message.outcome, message.attempts) == (MAX_ATTEMPTS - 1, "unparseable_kept", MAX_ATTEMPTS)
    assert "OperationalError" in message.problems[-1]
    assert tasks.inbound_parse_task.max_retries >= MAX_ATTEMPTS


def test_a_message_whose_task_was_lost_is_enqueued_again_and_given_up_after_its_attempts(email_incident):
    with mock.patch.object(tasks.inbound_parse_task, "delay"):
        lost = receive(corpus_bytes("01-en-liquidation-verified.eml"), "01.eml", email_incident)
        killer = receive(corpus_bytes("02-zh-gb2312-label-gbk-bytes.eml"), "02.eml", email_incident)
    InboundMessage.objects.filter(id=killer.id).update(attempts=MAX_ATTEMPTS)  # each attempt killed its worker

    requeued = inbound_requeue(older_than=timedelta(0))  # the sweep, once they have waited long enough

    assert requeued == [lost.id, killer.id]
    assert (outcome(lost), outcome(killer)) == ("new_claim", "unparseable_kept")
    assert InboundMessage.objects.get(id=killer.id).problems == [f"given up after {MAX_ATTEMPTS} attempts"]


def test_an_unknown_sender_is_answered_at_most_once_a_day(email_incident):
    unknown = "erik@othermail.example"
    for n in range(3):
        receive(compose(sender=unknown, message_id=f"<u{n}@othermail.example>"), f"u{n}", email_incident)
    answers = Notification.objects.filter(kind="no_account", to=unknown)
    first = answers.get()
    yesterday = timezone.now() - timedelta(hours=25)
    Notification.objects.filter(id=first.id).update(
        created_at=yesterday, key=first.key.rsplit(":", 1)[0] + f":{yesterday:%Y-%m-%d}"
    )

    receive(compose(sender=unknown, message_id="<u9@othermail.example>"), "u9", email_incident)

    assert answers.count() == 2
    assert [m.to for m in mail.outbox] == [[unknown], [unknown]]
    assert mail.outbox[0].from_email == "support@claimdesk.example"
    assert mail.outbox[0].extra_headers["In-Reply-To"] == "<u0@othermail.example>"


def test_the_answer_to_an_unknown_sender_is_in_their_language(email_incident):
    receive(compose(sender="li@othermail.example", subject="爆仓", body="我的账户被强平了。"), "zh", email_incident)

    assert "您好" in mail.outbox[0].body
    assert mail.outbox[0].subject.startswith("您的来信涉及哪个账户？")


def test_an_email_claim_when_claims_are_closed_is_kept_without_a_claim(email_incident):
    Incident.objects.filter(id=email_incident.id).update(claims_close=timezone.now() - timedelta(days=1))

    message = receive(compose(), "late", email_incident)

    message = InboundMessage.objects.get(id=message.id)
    assert (message.outcome, message.user_id, message.claim_id) == ("new_claim", 100056, None)
    assert message.problems[0].startswith("no claim filed: Claims for ")
    assert not mail.outbox


def test_a_webhook_message_with_no_incident_open_takes_the_one_open_when_parsed(email_incident):
    with mock.patch.object(tasks.inbound_parse_task, "delay"):
        message = receive(compose(), "no-incident", incident=None)

    tasks.inbound_parse_task.apply(kwargs={"message_id": message.id})

    message = InboundMessage.objects.select_related("claim").get(id=message.id)
    assert (message.incident_id, message.claim.incident_id) == (email_incident.id, email_incident.id)


INJECTED = "=?utf-8?q?Hello=0D=0ABcc=3A_victim=40evil=2Eexample?="
OUR_HEADERS = {
    "content-type",
    "mime-version",
    "content-transfer-encoding",
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "x-claimdesk-key",
    "in-reply-to",
    "references",
}


def test_no_line_break_from_a_message_reaches_an_outgoing_header(email_incident):
    raw = compose(
        subject=INJECTED,
        sender='"Ann\r\n Bcc: victim@evil.example" <user100056@example.com>',
        message_id="<id-1@example.com>",
        headers={"References": "<a@x>\r\n <b@x>"},
    )
    receive(raw, "injected", email_incident)
    receive(
        compose(sender="zed@othermail.example", subject=INJECTED, message_id="<id-2@x>"), "injected-2", email_incident
    )

    sent = [message_from_bytes(m.message().as_bytes()) for m in mail.outbox]  # as the recipient reads it

    assert len(sent) == 2  # the acknowledgement and the answer to the unknown sender
    for message in sent:
        assert {name.lower() for name in message.keys()} <= OUR_HEADERS
        assert message.get_all("Bcc") is None and "evil.example" not in message["To"]


def test_threading_values_are_made_header_safe_whoever_gives_them(email_incident):
    notification = notify(
        key="t:1",
        kind="no_account",
        user_id=None,
        to="zed@othermail.example",
        thread=Thread(
            in_reply_to="x@y>\r\nBcc: victim@evil.example",
            references=("a@b\r\nX-Evil: 1", "c@d"),
            subject_suffix="Hi\r\nBcc: v@e",
        ),
    )

    notification_send(notification_id=notification.id)

    headers = mail.outbox[-1].message()
    assert headers.get_all("Bcc") is None and headers.get_all("X-Evil") is None
    assert all("\n" not in value and "\r" not in value for value in headers.values())


def test_markup_from_a_message_is_escaped_in_every_e_mail(email_incident):
    markup = "<script>alert(1)</script><b>bold</b>"
    receive(compose(sender="zed@othermail.example", subject=markup, message_id="<mk-1@x>"), "mk-1", email_incident)
    receive(
        compose(subject=markup, message_id="<mk-2@x>", body=f"{markup} trade 982069 liquidated"), "mk-2", email_incident
    )

    bodies = [m.body for m in mail.outbox]

    assert bodies and all("<script>" not in body and "<b>" not in body for body in bodies)
    assert any("&lt;script&gt;" in body for body in bodies)
    assert all(not getattr(m, "alternatives", None) for m in mail.outbox)  # plain text only


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database's own guard is PostgreSQL's")
@pytest.mark.parametrize(
    "change",
    [
        lambda messages: messages.update(raw=b"altered"),
        lambda messages: messages.update(sha256="0" * 64),
        lambda messages: messages.update(received_at=timezone.now()),
        lambda messages: messages.delete(),
    ],
    ids=["raw", "sha256", "received_at", "delete"],
)
def test_what_was_received_is_never_changed_or_deleted(email_incident, change):
    message = receive(compose(), "kept", email_incident)

    with pytest.raises(DatabaseError, match="a received message is kept as received"), transaction.atomic():
        change(InboundMessage.objects.filter(id=message.id))

    assert bytes(InboundMessage.objects.get(id=message.id).raw) == compose()
