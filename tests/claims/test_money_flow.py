"""Approvals and payouts driven in random orders on a few items (a hypothesis state machine): after
every step, no item is paid more than its approved amount, none is in two live or held lines,
every paid line is traceable, no version has more approvals than its tier asks, and a refusal
changes nothing."""

from collections import Counter
from decimal import Decimal
from itertools import count

import pytest
from django.db import transaction
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from claims.models import (
    AuditRecord,
    Incident,
    Item,
    ItemApproval,
    PayoutBatch,
    PayoutConfirmation,
    PayoutLine,
    PayoutLineItem,
)
from claims.roles import Actor, Refused
from claims.services import item_amount_set, item_send_back, items_approve, items_reject
from claims.services.payouts import payout_batch_create, payout_line_release, payouts_confirm
from exchange.models import Asset, JournalEntry

from ..factories import INCIDENT_AT, IncidentFactory, StaffFactory

pytestmark = pytest.mark.django_db
T0 = INCIDENT_AT
AT = "2025-07-10T09:30:00Z"
STAFF = {
    "sam": ["support"],
    "sue": ["support"],
    "ava": ["approver"],
    "abe": ["approver"],
    "fin": ["finance"],
    "nobody": [],
}
# (userId, asset, amount, status, tier): policy approved, one approval, two approvals, needs review.
ITEMS = [
    (1, "USDC", "10", "approved", "policy"),
    (1, "USDC", "500", "computed", "one"),
    (2, "BTC", "0.5", "computed", "two"),
    (2, "USDC", None, "needs_review", "two"),
    (2, "BTC", "0.25", "approved", "policy"),
]
INCIDENTS = count(1)
ENTRY_IDS = count(80_000_001)

# Anyone may try anything (and is refused by role), but mostly the people whose work it is.
people = st.sampled_from([*STAFF, "root"])
reviewers = st.one_of(st.sampled_from(["sam", "sue", "ava", "abe"]), people)
finance = st.one_of(st.just("fin"), people)
items = st.integers(0, len(ITEMS) - 1)
lines = st.integers(0, 5)
reasons = st.sampled_from(["checked with the user", "checked with the user", ""])


def item_create(incident: Incident, n: int, spec: tuple) -> Item:
    user_id, asset, amount, status, tier = spec
    return Item.objects.create(
        incident=incident,
        user_id=user_id,
        kind="bad_fill",
        reference=f"fill:{n}:Bid",
        asset=asset,
        amount=amount and Decimal(amount),
        status=status,
        approval=tier,
        formula="test",
        inputs={},
    )


def snapshot() -> tuple:
    """Everything an approval or payout action may change."""
    return (
        list(Item.objects.order_by("id").values_list("id", "status", "version", "amount", "approval", "amount_set_by")),
        list(ItemApproval.objects.order_by("id").values_list("id", "item_id", "version", "approver_id")),
        list(PayoutBatch.objects.order_by("id").values_list("id", "number")),
        list(
            PayoutLine.objects.order_by("id").values_list(
                "id", "status", "transaction_id", "confirmed_at", "released_by"
            )
        ),
        list(PayoutLineItem.objects.order_by("id").values_list("id", "is_holding")),
        PayoutConfirmation.objects.count(),
        AuditRecord.objects.count(),
    )


class MoneyFlow(RuleBasedStateMachine):
    actors: dict[str, Actor] = {}

    def __init__(self):
        super().__init__()
        # Each run of the machine starts from the same rows and leaves none behind.
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        self.incident = IncidentFactory(slug=f"flow-{next(INCIDENTS)}")
        self.item_ids = [item_create(self.incident, n, spec).id for n, spec in enumerate(ITEMS)]

    def teardown(self):
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)

    def attempt(self, action) -> None:
        """Run one action; if it is refused, or says it changed nothing, nothing changed."""
        before = snapshot()
        try:
            result = action()
        except Refused as refusal:
            assert refusal.rule, refusal
            assert snapshot() == before, f"refused ({refusal.rule}: {refusal}) yet changed something"
            return
        if result is None or (isinstance(result, list) and not any(outcome.changed for outcome in result)):
            assert snapshot() == before, f"changed nothing ({result}) yet something changed"

    def line_key(self, n: int) -> str:
        keys = list(
            PayoutLine.objects.filter(batch__incident=self.incident).order_by("id").values_list("key", flat=True)
        )
        return keys[n % len(keys)] if keys else f"{self.incident.slug}.1.1"

    # --- staff ---

    @rule(n=items, who=reviewers)
    def approve(self, n, who):
        self.attempt(lambda: items_approve(item_ids=[self.item_ids[n]], actor=self.actors[who]))

    @rule(n=items, who=reviewers, reason=reasons)
    def reject(self, n, who, reason):
        self.attempt(lambda: items_reject(item_ids=[self.item_ids[n]], actor=self.actors[who], reason=reason))

    @rule(n=items, who=reviewers, amount=st.sampled_from(["7", "0.25", "0.000001", "0", "1.0000001"]))
    def set_amount(self, n, who, amount):
        self.attempt(
            lambda: item_amount_set(
                item_id=self.item_ids[n], actor=self.actors[who], amount=amount, reason="checked by hand"
            )
        )

    @rule(n=items, who=reviewers, reason=reasons)
    def send_back(self, n, who, reason):
        self.attempt(lambda: item_send_back(item_id=self.item_ids[n], actor=self.actors[who], reason=reason))

    # --- finance ---

    @rule(who=finance, asset=st.sampled_from([None, "USDC", "BTC"]))
    def batch(self, who, asset):
        self.attempt(lambda: payout_batch_create(incident=self.incident, actor=self.actors[who], asset=asset))

    @rule(
        who=finance,
        rows=st.lists(
            st.tuples(
                lines,
                st.sampled_from(["paid", "failed"]),
                st.sampled_from(["tx-a", "tx-a", "tx-b", ""]),
                st.sampled_from([AT, AT, AT, "soon"]),
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def confirm(self, who, rows):
        content = "lineKey,status,transactionId,confirmedAt\n" + "".join(
            f"{self.line_key(n)},{status},{tx},{at}\n" for n, status, tx, at in rows
        )
        self.attempt(lambda: payouts_confirm(content=content.encode(), file_name="t.csv", actor=self.actors[who]))

    @rule(n=lines, paid=st.booleans())
    def treasury_answers(self, n, paid):
        """One well-formed answer from finance, as treasury sends most of the time."""
        key = self.line_key(n)
        row = f"{key},paid,tx-{key},{AT}" if paid else f"{key},failed,,{AT}"
        content = f"lineKey,status,transactionId,confirmedAt\n{row}\n".encode()
        self.attempt(lambda: payouts_confirm(content=content, file_name="t.csv", actor=self.actors["fin"]))

    @rule(n=lines, who=finance, reason=reasons)
    def release(self, n, who, reason):
        self.attempt(lambda: payout_line_release(key=self.line_key(n), actor=self.actors[who], reason=reason))

    @rule(n=lines)
    def credit_arrives(self, n):
        """The exchange credits a line (a later bundle): its release is refused from now on."""
        line = PayoutLine.objects.filter(key=self.line_key(n)).first()
        if line is not None:
            JournalEntry.objects.create(
                id=next(ENTRY_IDS),
                import_run_id=0,
                user_id=line.user_id,
                symbol=line.asset,
                quantity=line.amount,
                kind="compensation",
                timestamp=T0,
                reference=f"payout:{line.key}",
            )

    # --- invariants ---

    @invariant()
    def an_item_is_in_at_most_one_live_or_held_line(self):
        holding = Counter(PayoutLineItem.objects.filter(is_holding=True).values_list("item_id", flat=True))
        assert all(n == 1 for n in holding.values()), holding
        for status, is_holding in PayoutLineItem.objects.values_list("line__status", "is_holding"):
            assert is_holding == (status != PayoutLine.Status.RELEASED)

    @invariant()
    def live_lines_pay_exactly_their_items_as_approved(self):
        items = {i.id: i for i in Item.objects.filter(incident=self.incident)}
        paid_entries = Counter()
        for line in PayoutLine.objects.filter(batch__incident=self.incident).prefetch_related("entries"):
            entries = list(line.entries.all())
            assert entries and line.amount == sum(e.amount for e in entries), line.key
            if line.status not in (PayoutLine.Status.EXPORTED, PayoutLine.Status.PAID):
                continue
            for entry in entries:
                item = items[entry.item_id]
                status = Item.Status.PAID if line.status == PayoutLine.Status.PAID else Item.Status.APPROVED
                assert (item.status, item.version, item.amount) == (status, entry.version, entry.amount), line.key
                paid_entries[item.id] += line.status == PayoutLine.Status.PAID
        paid = {i for i, item in items.items() if item.status == Item.Status.PAID}
        assert paid == {i for i, n in paid_entries.items() if n} and set(paid_entries.values()) <= {0, 1}

    @invariant()
    def every_paid_line_is_traceable(self):
        for line in PayoutLine.objects.filter(batch__incident=self.incident, status=PayoutLine.Status.PAID):
            trail = set(
                AuditRecord.objects.filter(object_type="payout_line", object_id=line.id).values_list(
                    "action", flat=True
                )
            )
            assert {"exported", "paid"} <= trail and line.transaction_id and line.confirmed_at
            for item_id in line.entries.values_list("item_id", flat=True):
                assert (
                    AuditRecord.objects.filter(
                        object_type="item", object_id=item_id, action="paid", after__line=line.key
                    ).count()
                    == 1
                )

    @invariant()
    def no_version_has_more_approvals_than_its_tier_asks(self):
        given = Counter(ItemApproval.objects.filter(item__incident=self.incident).values_list("item_id", "version"))
        assert all(n <= 2 for n in given.values()), given
        for item in Item.objects.filter(incident=self.incident):
            now = given[(item.id, item.version)]
            needed = 0 if item.approval == Item.Approval.POLICY else item.approvals_required
            assert now <= item.approvals_required, (item.id, now)
            if item.status in (Item.Status.APPROVED, Item.Status.PAID):
                assert now == needed, (item.id, item.approval, now)


@pytest.fixture
def quick_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def assets(db):
    Asset.objects.create(symbol="USDC", decimals=6, import_run_id=0)
    Asset.objects.create(symbol="BTC", decimals=8, import_run_id=0)


def test_a_needs_review_item_is_rejected_and_reopened_without_an_amount(quick_passwords):
    """Found by the machine: the database refused a rejected item without an amount."""
    sam = Actor.person(StaffFactory(username="sam", roles=["support"]))
    review = item_create(IncidentFactory(slug="review"), 1, (2, "USDC", None, "needs_review", "two"))

    rejected = items_reject(item_ids=[review.id], actor=sam, reason="not a loss")
    reopened = item_send_back(item_id=review.id, actor=sam, reason="the user sent proof")

    assert [o.changed for o in rejected] == [True]
    assert (reopened.status, reopened.amount, reopened.version) == ("needs_review", None, 2)


def test_money_flows_once_and_traceably_whatever_staff_do_in_whatever_order(quick_passwords):
    MoneyFlow.actors = {name: Actor.person(StaffFactory(username=name, roles=roles)) for name, roles in STAFF.items()}
    MoneyFlow.actors["root"] = Actor.person(StaffFactory(username="root", is_superuser=True))

    run_state_machine_as_test(
        MoneyFlow,
        settings=hypothesis_settings(
            max_examples=30, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
