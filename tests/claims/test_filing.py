"""Filing a claim that is received at once (claims.services.claim_file): on PostgreSQL one
statement, elsewhere claim_create; both must write the same rows and refuse the same claims."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from claims import services, tasks
from claims.models import AuditRecord, Claim, Incident

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"
USER = 100056
REFERENCES = {
    "trade_id": 982069,
    "order_id": "o-7",
    "market_symbol": "ETH_USDC_PERP",
    "approximate_time": datetime(2025, 7, 3, 11, 33, tzinfo=UTC),
    "claimed_amount": Decimal("62.25"),
    "claimed_asset": "USDC",
    "transaction_hash": "0xab",
}
NOT_COMPARED = {"id", "public_id", "created_at", "updated_at", "claim", "at", "object_id"}


@pytest.fixture
def enqueued(open_sample_incident, monkeypatch):
    """Matching is enqueued, not run: the claims stay as filed."""
    calls = []
    monkeypatch.setattr(tasks.claim_match_task, "delay", lambda claim_id: calls.append(claim_id))
    return calls


def row(instance) -> dict:
    return {
        f.attname: getattr(instance, f.attname)
        for f in type(instance)._meta.concrete_fields
        if f.name not in NOT_COMPARED
    }


def file(**overrides):
    values = {
        "incident_slug": SLUG,
        "user_id": USER,
        "channel": "api",
        "kind": "liquidation",
        "description": "liquidated",
        "references": REFERENCES,
        "language": "pt-br",
        "actor": "api client fe",
    }
    return services.claim_file(**{**values, **overrides})


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement path is PostgreSQL's")
def test_one_statement_writes_what_claim_create_writes(enqueued):
    before = timezone.now()
    filed = file()
    created = services.claim_create(
        incident=Incident.objects.get(slug=SLUG),
        user_id=USER,
        channel="api",
        kind="liquidation",
        description="liquidated",
        references=REFERENCES,
        language="pt-br",
        actor="api client fe",
    )

    stored = {claim.id: claim for claim in Claim.objects.all()}
    assert row(stored[filed.id]) == row(stored[created.id]) == row(filed)
    assert before <= stored[filed.id].created_at == stored[filed.id].updated_at == filed.created_at
    assert stored[filed.id].public_id == filed.public_id
    records = [
        [row(r) for r in AuditRecord.objects.filter(object_type="claim", object_id=claim.id)]
        for claim in (filed, created)
    ]
    assert records[0] == records[1] == [row(r) for r in filed.history]
    assert filed.history[0].id == AuditRecord.objects.get(object_type="claim", object_id=filed.id).id
    assert enqueued == [filed.id, created.id]


def test_a_filed_claim_is_received_and_enqueued_for_matching(enqueued):
    claim = file(references={})

    assert Claim.objects.get(id=claim.id).status == "received" == claim.status
    assert (claim.incident.slug, list(claim.items.all())) == (SLUG, [])
    assert [r.reason for r in claim.history] == ["filed through api"]
    assert [r.reason for r in AuditRecord.objects.filter(object_type="claim", object_id=claim.id)] == [
        "filed through api"
    ]
    assert enqueued == [claim.id]


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"incident_slug": "no-such-incident"}, "incident", "There is no incident no-such-incident."),
        ({"user_id": 999999}, "user_id", "There is no account 999999."),
    ],
)
def test_what_does_not_exist_is_refused_and_nothing_is_stored(enqueued, overrides, field, message):
    with pytest.raises(services.ClaimRefused) as refused:
        file(**overrides)

    assert (refused.value.field, str(refused.value)) == (field, message)
    assert not Claim.objects.exists() and not AuditRecord.objects.filter(object_type="claim").exists()
    assert not enqueued


def test_a_claim_after_claims_close_is_refused_and_nothing_is_stored(enqueued):
    Incident.objects.filter(slug=SLUG).update(claims_close=timezone.now() - timedelta(minutes=1))

    with pytest.raises(services.ClaimRefused) as refused:
        file(user_id=999999)  # closed comes first, as in claim_create

    assert refused.value.field == "incident" and "closed on" in str(refused.value)
    assert not Claim.objects.exists() and not enqueued
