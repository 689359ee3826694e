"""The whole corpus through the pipeline, as the spec's contract: `import_mailbox` on a folder of
its files (received in name order), then each file's outcome, userId, claim and references, and
its line of `export_inbound`, against its sidecar."""

import hashlib
import io
import json
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import override_settings

from claims.models import AuditRecord, Claim, InboundMessage
from claims.services.inbound import forget_markets
from tests.inbound.corpus import corpus_files, two_megabyte_message

from .conftest import INTAKE_SETTINGS, TWO_MEGABYTES_NAME, accounts_and_incident, corpus_expected, corpus_folder

EXPECTED = corpus_expected()
CLAIMED = {"new_claim", "unverified"}


@pytest.fixture(scope="module")
def received(django_db_setup, django_db_blocker, tmp_path_factory):
    """The corpus received once for the module: {file name: (message, export line)}, and the
    e-mail sent."""
    folder = tmp_path_factory.mktemp("intake-corpus")
    with django_db_blocker.unblock(), override_settings(**INTAKE_SETTINGS, MEDIA_ROOT=str(folder / "media")):
        try:
            forget_markets()
            accounts_and_incident(folder)
            mail.outbox = []
            call_command("import_mailbox", str(corpus_folder(folder / "mail")), stdout=io.StringIO())
            call_command("export_inbound", output=str(folder / "export.jsonl"), stderr=io.StringIO())
            lines = [json.loads(line) for line in (folder / "export.jsonl").read_text("utf-8").splitlines()]
            messages = list(InboundMessage.objects.select_related("claim").order_by("id"))
            yield {
                "by_name": {m.place: (m, line) for m, line in zip(messages, lines, strict=True)},
                "sent": list(mail.outbox),
                "order": [m.place for m in messages],
            }
        finally:
            call_command("flush", interactive=False, verbosity=0)


def _claim_of(received, name: str) -> Claim | None:
    return received["by_name"][name][0].claim


def expected_claim(received, name: str) -> Claim | None:
    """The claim a file's outcome concerns: its own (new_claim, unverified), or the claim of the
    message it answers or repeats."""
    want = EXPECTED[name]
    if want["outcome"] in CLAIMED:
        return _claim_of(received, name)
    if want["outcome"] in ("reply", "duplicate"):
        return _claim_of(received, want["dependsOn"][0])
    return None


def expected_line(name: str, sha256: str, claim: Claim | None) -> dict:
    want = EXPECTED[name]
    return {
        "messageId": f"<{want['messageId']}>" if want["messageId"] else None,
        "sha256": sha256,
        "outcome": want["outcome"],
        "userId": want["userId"],
        "claim": str(claim.public_id) if claim else None,
        "kind": want["kind"],
        "symbols": want["symbols"],
        "tradeIds": want["tradeIds"],
        "orderIds": want["orderIds"],
        "withdrawalIds": want["withdrawalIds"],
        "txHashes": want["txHashes"],
        "amounts": want["amounts"],
        "attachments": want["attachments"],
        "ignoredReason": want["ignoredReason"],
    }


def expected_references(name: str) -> dict:
    """What a claim filed from the message holds: the kind (or `other` when the text names none),
    and the first of each reference the text gives."""
    want = EXPECTED[name]
    amount = want["amounts"][0] if want["amounts"] else None
    return {
        "channel": "email",
        "kind": want["kind"] or "other",
        "trade_id": next(iter(want["tradeIds"]), None),
        "order_id": next(iter(want["orderIds"]), ""),
        "withdrawal_id": next(iter(want["withdrawalIds"]), None),
        "transaction_hash": next(iter(want["txHashes"]), ""),
        "market_symbol": next(iter(want["symbols"]), ""),
        "claimed_amount": Decimal(amount[0]) if amount else None,
        "claimed_asset": amount[1] if amount else "",
    }


def test_the_corpus_is_received_in_file_name_order(received):
    assert received["order"] == sorted(EXPECTED)


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_message_gets_its_outcome_account_claim_and_export_line(received, name):
    message, line = received["by_name"][name]
    want = EXPECTED[name]

    claim = expected_claim(received, name)

    assert (message.outcome, message.user_id) == (want["outcome"], want["userId"])
    assert line == expected_line(name, hashlib.sha256(bytes(message.raw)).hexdigest(), claim)
    assert (claim is not None) == (want["outcome"] in CLAIMED | {"reply", "duplicate"})
    if want["outcome"] in CLAIMED:
        claim = Claim.objects.get(id=claim.id)
        assert claim.user_id == want["userId"]
        assert {field: getattr(claim, field) for field in expected_references(name)} == expected_references(name)
        assert (claim.status == Claim.Status.UNVERIFIED) == (want["outcome"] == "unverified")


def test_the_raw_bytes_are_kept_byte_for_byte(received):
    sources = {path.name: path.read_bytes() for path in corpus_files()}
    sources[TWO_MEGABYTES_NAME] = two_megabyte_message()[0]

    kept = {name: bytes(message.raw) for name, (message, _) in received["by_name"].items()}

    assert kept == sources
    assert all(
        message.sha256 == hashlib.sha256(sources[name]).hexdigest()
        for name, (message, _) in received["by_name"].items()
    )


@pytest.mark.django_db
def test_a_reply_adds_its_new_text_to_the_claim_it_answers(received):
    claim = _claim_of(received, "01-en-liquidation-verified.eml")

    added = [
        record.reason
        for record in AuditRecord.objects.filter(object_type="claim", object_id=claim.id, action="information_added")
    ]

    assert len(added) == 1
    assert "5550002" in added[0]  # 13's new text names another order
    assert "7777" not in added[0]  # the quoted earlier message is not added again


def test_new_claims_are_acknowledged_to_the_sender_threaded_under_their_message(received):
    message, _ = received["by_name"]["01-en-liquidation-verified.eml"]

    acks = [m for m in received["sent"] if m.extra_headers.get("In-Reply-To") == "<claim-0001@example.com>"]

    assert len(acks) == 1
    assert acks[0].to == ["user100056@example.com"]
    assert acks[0].from_email == "support@claimdesk.example"
    assert acks[0].extra_headers["References"] == "<claim-0001@example.com>"
    assert f"claim {message.claim.public_id.hex[:12]}" in acks[0].subject


def test_unverified_claims_send_the_link_to_the_address_on_file_never_to_the_sender(received):
    to = sorted(m.to[0] for m in received["sent"] if "/verify/" in m.body)

    assert to == ["user100056@example.com"] * 4 + ["user100088@example.com"]
    assert all("carla.new@othermail.example" not in m.to for m in received["sent"])


def test_unknown_senders_get_one_answer_and_ignored_mail_none(received):
    answered = sorted(
        m.to[0]
        for m in received["sent"]
        if m.extra_headers.get("X-Claimdesk-Key", "").startswith("inbound:no-account:")
    )
    ignored_senders = {
        received["by_name"][name][0].from_address for name, want in EXPECTED.items() if want["outcome"] == "ignored"
    }

    assert answered == [
        "User100080@example.com",
        "carla@othermail.example",
        "dana@othermail.example",
        "erik@othermail.example",
    ]
    assert not [m for m in received["sent"] if set(m.to) & ignored_senders]
