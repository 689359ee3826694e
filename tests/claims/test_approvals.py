"""Approvals (payouts.md): tiers, four eyes, versions, roles, and claims that follow their items."""

import io
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection

from claims import detectors as d
from claims.models import ApprovalLimitChange, AuditRecord, Claim, ClaimItem, Incident, Item, ItemApproval
from claims.roles import Actor, Refused, RoleConflict, RoleRefused, role_assign
from claims.services import (
    claim_approve,
    claim_reject,
    incident_limits_confirm,
    item_amount_set,
    item_approval,
    item_approve,
    item_for_claim_create,
    item_recomputation_accept,
    item_reject,
    item_send_back,
)

from ..conftest import JULY3
from ..factories import StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"
T = datetime(2025, 7, 3, 11, 0, tzinfo=UTC)


@pytest.fixture
def incident(open_sample_incident):
    call_command("detect", SLUG, stdout=io.StringIO())
    return open_sample_incident


def item(user_id: int, reference: str) -> Item:
    return Item.objects.get(user_id=user_id, reference=reference)


@pytest.fixture
def one(incident) -> Item:
    """4,604.36 USDC: one staff approval."""
    return item(100007, "fill:982009:Ask")


@pytest.fixture
def two(incident) -> Item:
    """44,871 USDC: two approvals, one of them an approver's."""
    return item(100070, "withdrawal:5109")


def person(username: str, *roles: str) -> Actor:
    return Actor.person(StaffFactory(username=username, roles=list(roles)))


def records(obj, action=None):
    found = AuditRecord.objects.filter(object_type="item", object_id=obj.id)
    return found.filter(action=action) if action else found


# --- tiers ---


def tier(amount: str, *, auto="100", dual="10000", price="1", asset="SOL") -> tuple:
    prices = d.Prices({"SOL_USDC": [(T, Decimal(price), Decimal(price))]}, reference="index", max_age=300)
    detected = d.Detected("bad_fill", "fill:1:Bid", asset, Decimal(amount), "f", {}, T)
    return item_approval(
        detected, Incident(auto_approve_limit=Decimal(auto), dual_approval_limit=Decimal(dual)), prices
    )


@pytest.mark.parametrize(
    "amount, expected",
    [
        ("100", ("approved", "policy", Decimal("100.00"))),  # exactly auto_approve_limit: policy
        ("100.004", ("approved", "policy", Decimal("100.00"))),  # rounds to the limit's cents
        ("100.005", ("computed", "one", Decimal("100.01"))),  # half up, above it
        ("10000", ("computed", "one", Decimal("10000.00"))),  # exactly dual_approval_limit: one approval
        ("10000.01", ("computed", "two", Decimal("10000.01"))),
    ],
)
def test_each_tier_boundary_belongs_to_the_lower_tier(amount, expected):
    assert tier(amount) == expected


def test_the_usdc_value_is_the_exact_product_rounded_once():
    # 12.005000000000012005 × 0.999999999999999 = 12.004999999999999... : 12.00, not 12.01 (28 digits)
    assert tier("12.005000000000012005", auto="12.00", price="0.999999999999999") == (
        "approved",
        "policy",
        Decimal("12.00"),
    )


def test_an_unknown_value_or_no_amount_needs_two_approvals():
    assert tier("1", asset="BTC") == ("computed", "two", None)  # no BTC_USDC price
    detected = d.Detected("bad_fill", "fill:1:Bid", "USDC", None, "f", {}, T, review_reason="no price")
    assert item_approval(
        detected, Incident(auto_approve_limit=1, dual_approval_limit=2), d.Prices({}, reference="index", max_age=300)
    )[:2] == ("needs_review", "two")


# --- one and two approvals ---


def test_one_approval_by_support_approves_a_one_approval_item(one):
    outcome = item_approve(item_id=one.id, actor=person("ann", "support"))

    one.refresh_from_db()
    assert (outcome.changed, outcome.message, one.status) == (True, "approved", "approved")
    assert list(records(one).values_list("action", flat=True))[-1] == "approved"
    assert AuditRecord.objects.filter(object_type="approval", action="given").count() == 1


def test_two_approvals_come_from_two_people_one_of_them_an_approver(two):
    ann, bea, carl = person("ann", "support"), person("bea", "support"), person("carl", "approver")

    first = item_approve(item_id=two.id, actor=ann)
    second = item_approve(item_id=two.id, actor=bea)
    two.refresh_from_db()
    assert (first.message, two.status) == ("approval 1 of 2 given", "computed")
    assert not second.changed and "must come from an approver" in second.message

    third = item_approve(item_id=two.id, actor=carl)

    two.refresh_from_db()
    assert (third.message, two.status) == ("approved", "approved")
    assert list(two.approvals.values_list("approver_name", "slot")) == [("ann", 1), ("carl", 2)]


def test_the_same_person_approving_twice_gives_one_approval(two):
    carl = person("carl", "approver")

    item_approve(item_id=two.id, actor=carl)
    again = item_approve(item_id=two.id, actor=carl)

    two.refresh_from_db()
    assert (again.changed, two.status, two.approvals.count()) == (False, "computed", 1)
    assert again.message == "carl has already approved version 1"


def test_approving_or_rejecting_a_decided_item_changes_nothing_and_says_why(one):
    item_approve(item_id=one.id, actor=person("ann", "support"))
    count = AuditRecord.objects.count()

    approve = item_approve(item_id=one.id, actor=person("carl", "approver"))
    reject = item_reject(item_id=one.id, actor=person("carl", "approver"), reason="no")

    assert (approve.changed, reject.changed) == (False, False)
    assert approve.message == "already approved (version 1): nothing to approve"
    assert reject.message == "already approved: send it back (with a reason) before rejecting it"
    assert AuditRecord.objects.count() == count


# --- amounts set by hand, versions ---


def test_an_amount_set_by_hand_is_a_new_version_that_two_other_people_approve(one):
    carl, dora, ann = person("carl", "approver"), person("dora", "approver"), person("ann", "support")

    item_amount_set(item_id=one.id, actor=carl, amount="4500.5", reason="fee refunded separately")
    own = item_approve(item_id=one.id, actor=carl)
    item_approve(item_id=one.id, actor=ann)
    item_approve(item_id=one.id, actor=dora)

    one.refresh_from_db()
    assert "set this version's amount" in own.message and not own.changed
    assert (one.amount, one.version, one.approval, one.amount_set_by, one.status) == (
        Decimal("4500.500000"),
        2,
        "two",
        "carl",
        "approved",
    )
    assert records(one, "amount_set").get().reason == "fee refunded separately"


def test_an_approval_of_an_older_version_never_counts_again(two):
    carl, dora, ann = person("carl", "approver"), person("dora", "approver"), person("ann", "support")
    item_approve(item_id=two.id, actor=carl)

    item_amount_set(item_id=two.id, actor=dora, amount="44000", reason="checked with treasury")
    stale = item_approve(item_id=two.id, actor=ann, version=1)
    first = item_approve(item_id=two.id, actor=carl)  # carl's version-1 approval does not count for version 2

    two.refresh_from_db()
    assert not stale.changed and stale.message == "version 1 is no longer current: the item is at version 2"
    assert (first.message, two.status) == ("approval 1 of 2 given", "computed")
    assert two.approvals.filter(version=2).count() == 1


@pytest.mark.parametrize(
    "amount, rule",
    [
        ("0", "amount positive"),
        ("-5", "amount format"),
        ("1.0000001", "asset decimals"),
        ("1_000", "amount format"),
        ("١٢", "amount format"),
        ("1e3", "amount format"),
    ],
)
def test_an_amount_set_by_hand_is_a_plain_positive_decimal_within_the_assets_decimals(one, amount, rule):
    with pytest.raises(Refused) as refused:
        item_amount_set(item_id=one.id, actor=person("carl", "approver"), amount=amount, reason="r")

    one.refresh_from_db()
    assert refused.value.rule == rule and one.version == 1


def test_setting_an_amount_needs_a_reason(one):
    with pytest.raises(Refused, match="needs a reason"):
        item_amount_set(item_id=one.id, actor=person("carl", "approver"), amount="1", reason="  ")


def test_a_needs_review_item_whose_amount_is_set_becomes_computed_with_two_approvals(incident):
    unpriced = item(100021, "fill:982025:Ask")

    item_amount_set(item_id=unpriced.id, actor=person("carl", "approver"), amount="12.5", reason="priced by hand")

    unpriced.refresh_from_db()
    assert (unpriced.status, unpriced.approval, unpriced.amount, unpriced.version) == (
        "computed",
        "two",
        Decimal("12.500000"),
        2,
    )


def test_staff_set_an_amount_for_an_unmatched_claim_as_an_item_of_kind_other(incident):
    claim = Claim.objects.create(incident=incident, user_id=100007, channel="staff", kind="other", status="unmatched")

    created = item_for_claim_create(
        claim_id=claim.id,
        actor=person("carl", "approver"),
        asset="USDC",
        amount="150",
        reason="goodwill for a missed deposit",
    )

    assert (created.kind, created.reference, created.approval, created.status) == (
        "other",
        f"claim:{claim.public_id}",
        "two",
        "computed",
    )
    assert ClaimItem.objects.filter(claim=claim, item=created).exists()
    call_command("detect", SLUG, "--user", "100007", stdout=io.StringIO())  # detection leaves it alone
    assert Item.objects.filter(id=created.id, amount=Decimal("150")).exists()


# --- rejecting, sending back ---


def test_a_rejection_needs_a_reason_and_decides_the_item(one):
    with pytest.raises(Refused, match="needs a reason"):
        item_reject(item_id=one.id, actor=person("ann", "support"), reason="")

    item_reject(item_id=one.id, actor=person("ann", "support"), reason="a normal fill")

    one.refresh_from_db()
    assert one.status == "rejected"
    assert records(one, "rejected").get().reason == "a normal fill"


def test_a_decided_item_sent_back_is_a_new_version_and_a_rejected_one_is_reopened(one, incident):
    ann = person("ann", "support")
    item_approve(item_id=one.id, actor=ann)

    item_send_back(item_id=one.id, actor=ann, reason="wrong price")
    one.refresh_from_db()
    assert (one.status, one.version) == ("computed", 2)
    item_reject(item_id=one.id, actor=ann, reason="not owed")
    item_send_back(item_id=one.id, actor=ann, reason="the claimant sent a statement")

    one.refresh_from_db()
    assert (one.status, one.version) == ("computed", 3)
    assert list(records(one).values_list("action", flat=True))[-4:] == ["approved", "sent_back", "rejected", "reopened"]


def test_a_policy_item_sent_back_is_approved_by_policy_again(incident):
    small = item(100014, "position:ETH_USDC_PERP")

    item_send_back(item_id=small.id, actor=person("ann", "support"), reason="look again")

    small.refresh_from_db()
    assert (small.status, small.version) == ("approved", 2)
    assert records(small).order_by("-id").first().actor == "policy"


def test_a_policy_approval_no_longer_detected_is_flagged_and_staff_can_reject_it(incident, tmp_path):
    policy_approved = item(100035, "fill:982042:Bid")
    data = json.loads((JULY3 / "incident.json").read_text())
    data.update(bad_fill_tolerance_bps=100000, claims_close="2099-01-01T00:00:00Z")
    (tmp_path / "incident.json").write_text(json.dumps(data))
    call_command("load_incident", str(tmp_path / "incident.json"), stdout=io.StringIO())
    policy_approved.refresh_from_db()
    assert (policy_approved.status, policy_approved.flag_reason) == ("approved", "no longer detected")

    outcome = item_reject(item_id=policy_approved.id, actor=person("ann", "support"), reason="not a bad fill")

    policy_approved.refresh_from_db()
    assert outcome.changed and (policy_approved.status, policy_approved.version) == ("rejected", 2)


def test_a_removed_undecided_item_keeps_its_history_in_the_trail(one, tmp_path):
    data = json.loads((JULY3 / "incident.json").read_text())
    data.update(bad_fill_tolerance_bps=100000, claims_close="2099-01-01T00:00:00Z")
    (tmp_path / "incident.json").write_text(json.dumps(data))

    call_command("load_incident", str(tmp_path / "incident.json"), stdout=io.StringIO())

    assert not Item.objects.filter(id=one.id).exists()
    assert list(records(one).values_list("action", flat=True)) == ["detected", "removed"]
    assert records(one, "removed").get().before["amount"] == "4604.363635"


def test_an_undecided_item_with_an_approval_is_flagged_not_removed(two, tmp_path):
    item_approve(item_id=two.id, actor=person("carl", "approver"))
    data = json.loads((JULY3 / "incident.json").read_text())
    later = "2025-07-10T00:00:00Z"  # the withdrawal no longer falls before the window
    data.update(
        window_start=later,
        trading_resumed=later,
        window_end=later,
        evaluation_end=later,
        claims_close="2099-01-01T00:00:00Z",
    )
    (tmp_path / "incident.json").write_text(json.dumps(data))

    call_command("load_incident", str(tmp_path / "incident.json"), stdout=io.StringIO())

    two.refresh_from_db()
    assert (two.status, two.flag_reason) == ("computed", "no longer detected")
    refused = item_approve(item_id=two.id, actor=person("dora", "approver"))
    assert "flagged by detection" in refused.message


def test_accepting_a_flagged_recomputation_is_a_new_version_by_the_one_who_accepts(one, tmp_path):
    ann, carl, dora = person("ann", "support"), person("carl", "approver"), person("dora", "approver")
    item_approve(item_id=one.id, actor=ann)
    data = json.loads((JULY3 / "incident.json").read_text())
    data.update(price_reference="mark", claims_close="2099-01-01T00:00:00Z")
    (tmp_path / "incident.json").write_text(json.dumps(data))
    call_command("load_incident", str(tmp_path / "incident.json"), stdout=io.StringIO())
    one.refresh_from_db()
    recomputed = one.flagged_amount
    assert one.status == "approved" and recomputed != one.amount

    item_recomputation_accept(item_id=one.id, actor=carl, reason="mark price is right")

    one.refresh_from_db()
    assert (one.amount, one.version, one.amount_set_by, one.status, one.flagged_at) == (
        recomputed,
        2,
        "carl",
        "computed",
        None,
    )
    assert one.inputs["reference_price"]["price"] != "" and one.approval == "two"
    assert not item_approve(item_id=one.id, actor=carl).changed
    item_approve(item_id=one.id, actor=ann)
    item_approve(item_id=one.id, actor=dora)
    one.refresh_from_db()
    assert one.status == "approved"


# --- the same event in two incidents ---


def test_an_event_approved_in_one_incident_is_refused_in_another_naming_it(one, tmp_path):
    data = json.loads((JULY3 / "incident.json").read_text())
    data.update(slug="sample-again", claims_close="2099-01-01T00:00:00Z")
    (tmp_path / "again.json").write_text(json.dumps(data))
    call_command("load_incident", str(tmp_path / "again.json"), stdout=io.StringIO())
    call_command("detect", "sample-again", stdout=io.StringIO())
    twin = Item.objects.get(incident__slug="sample-again", user_id=100007, reference="fill:982009:Ask")
    item_approve(item_id=one.id, actor=person("ann", "support"))

    refused = item_approve(item_id=twin.id, actor=person("carl", "approver"))

    assert not refused.changed
    assert refused.message == f"the same event is already approved or paid in incident {SLUG} (approved)"


# --- roles ---


@pytest.mark.parametrize("roles", [["finance"], []])
def test_only_support_and_approvers_approve_reject_or_set_amounts(one, roles):
    actor = person("fin", *roles)

    for act in (
        lambda: item_approve(item_id=one.id, actor=actor),
        lambda: item_reject(item_id=one.id, actor=actor, reason="r"),
        lambda: item_amount_set(item_id=one.id, actor=actor, amount="1", reason="r"),
        lambda: item_send_back(item_id=one.id, actor=actor, reason="r"),
    ):
        with pytest.raises(RoleRefused, match="only approver or support may"):
            act()

    one.refresh_from_db()
    assert (one.status, one.version) == ("computed", 1) and not ItemApproval.objects.exists()


def test_a_superuser_holds_no_role(one):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@claimdesk.example", "x")
    root.groups.add(Group.objects.get(name="approver"))

    with pytest.raises(RoleRefused, match="root holds no role"):
        item_approve(item_id=one.id, actor=Actor.person(root))


def test_finance_excludes_support_and_approver(incident):
    fin = StaffFactory(username="fin", roles=["finance"])

    with pytest.raises(RoleConflict, match="finance excludes support and approver"):
        role_assign(user=fin, role="approver")
    with pytest.raises(RoleConflict):
        fin.groups.add(Group.objects.get(name="support"))  # as the admin's user form does
    with pytest.raises(CommandError, match="finance excludes"):
        call_command("assign_role", "fin", "support", stdout=io.StringIO())

    assert list(fin.groups.values_list("name", flat=True)) == ["finance"]


# --- approval limits ---


def limits_file(tmp_path, **limits) -> str:
    data = json.loads((JULY3 / "incident.json").read_text())
    data.update(claims_close="2099-01-01T00:00:00Z", **limits)
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_raised_limits_wait_for_a_second_approver_and_never_make_policy_approvals(one, two, incident, tmp_path):
    out = io.StringIO()
    call_command(
        "load_incident",
        limits_file(tmp_path, auto_approve_limit="1000000000000", dual_approval_limit="1000000000000"),
        "--by",
        "mallory",
        stdout=out,
    )

    incident.refresh_from_db()
    change = ApprovalLimitChange.objects.get()
    assert (incident.auto_approve_limit, change.status) == (Decimal("100"), "pending")
    assert "wait" in out.getvalue()
    with pytest.raises(RoleRefused):
        incident_limits_confirm(change_id=change.id, actor=person("ann", "support"))
    with pytest.raises(Refused, match="proposed this change"):
        incident_limits_confirm(change_id=change.id, actor=person("mallory", "approver"))

    incident_limits_confirm(change_id=change.id, actor=person("carl", "approver"))

    incident.refresh_from_db()
    one.refresh_from_db()
    two.refresh_from_db()
    assert incident.auto_approve_limit == Decimal("1000000000000")
    assert (one.status, one.approval) == ("computed", "one")  # undecided, never approved by policy by itself
    assert (two.status, two.approval, two.version) == ("computed", "one", 2)
    assert not Item.objects.filter(status="approved").exclude(approval="policy").exists()


def test_one_person_raising_limits_in_the_admin_changes_no_item(one, incident, rf):
    from django.contrib import admin
    from django.contrib.messages.storage.fallback import FallbackStorage

    from claims.admin import IncidentAdmin

    before = sorted(Item.objects.values_list("id", "status", "approval", "version"))
    request = rf.post("/admin/claims/incident/")
    request.user = StaffFactory(username="mallory", roles=["approver"])
    request.session, request._messages = {}, None
    request._messages = FallbackStorage(request)
    incident.auto_approve_limit = incident.dual_approval_limit = Decimal("1000000000000")

    IncidentAdmin(Incident, admin.site).save_model(request, incident, form=None, change=True)

    incident.refresh_from_db()
    assert incident.auto_approve_limit == Decimal("100")
    assert sorted(Item.objects.values_list("id", "status", "approval", "version")) == before
    assert ApprovalLimitChange.objects.get().proposed_by == "mallory"


# --- claims follow their items ---


def test_a_claim_approved_through_its_items_is_never_changed_silently_by_detection(incident, tmp_path):
    claim = Claim.objects.create(incident=incident, user_id=100007, channel="staff", kind="bad_fill", status="matched")
    ClaimItem.objects.create(claim=claim, item=item(100007, "fill:982009:Ask"))
    claim_approve(claim_id=claim.id, actor=person("ann", "support"))
    approved = item(100007, "fill:982009:Ask")
    claim.refresh_from_db()
    assert (claim.status, approved.status) == ("approved", "approved")

    call_command("load_incident", limits_file(tmp_path, price_reference="mark"), stdout=io.StringIO())

    changed = item(100007, "fill:982009:Ask")
    claim.refresh_from_db()
    assert (changed.amount, changed.status, claim.status) == (approved.amount, "approved", "approved")
    assert changed.flagged_amount is not None and changed.flagged_amount != changed.amount


def test_claims_follow_their_items_to_rejected_and_back_to_review(incident):
    claim = Claim.objects.create(incident=incident, user_id=100007, channel="staff", kind="bad_fill", status="matched")
    ClaimItem.objects.create(claim=claim, item=item(100007, "fill:982009:Ask"))
    ann = person("ann", "support")

    claim_reject(claim_id=claim.id, actor=ann, reason="a normal fill")
    claim.refresh_from_db()
    assert claim.status == "rejected"
    item_send_back(item_id=item(100007, "fill:982009:Ask").id, actor=ann, reason="look again")

    claim.refresh_from_db()
    assert claim.status == "in_review"
    statuses = list(
        AuditRecord.objects.filter(object_type="claim", object_id=claim.id).values_list("after__status", flat=True)
    )
    assert statuses == ["rejected", "in_review"]


# --- at the same moment (PostgreSQL: real row locks) ---

needs_row_locks = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time"
)


def at_once(actions: list) -> list:
    results, start = [None] * len(actions), threading.Barrier(len(actions))

    def run(index, action):
        try:
            start.wait()
            results[index] = action()
        except Exception as exc:  # noqa: BLE001 - a refusal is a result here
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@needs_row_locks
def test_twenty_people_approving_one_item_at_once_give_exactly_the_approvals_its_tier_asks(two):
    actors = [person(f"approver{n}", "approver") for n in range(20)]

    results = at_once([lambda a=a: item_approve(item_id=two.id, actor=a) for a in actors])

    two.refresh_from_db()
    assert two.status == "approved"
    assert two.approvals.count() == 2
    assert sum(1 for r in results if getattr(r, "changed", False)) == 2
    assert records(two, "approved").count() == 1


@needs_row_locks
def test_ten_approvals_and_ten_rejections_of_one_claim_at_once_decide_it_once(incident):
    claim = Claim.objects.create(
        incident=incident, user_id=100007, channel="staff", kind="bad_fill", status="matched", language="en"
    )
    ClaimItem.objects.create(claim=claim, item=item(100007, "fill:982009:Ask"))
    ann = [person(f"ann{n}", "support") for n in range(10)]
    bea = [person(f"bea{n}", "support") for n in range(10)]
    mail.outbox.clear()

    at_once(
        [lambda a=a: claim_approve(claim_id=claim.id, actor=a) for a in ann]
        + [lambda b=b: claim_reject(claim_id=claim.id, actor=b, reason="no") for b in bea]
    )

    claim.refresh_from_db()
    decisions = AuditRecord.objects.filter(object_type="claim", object_id=claim.id, action="status")
    assert claim.status in ("approved", "rejected")
    assert list(decisions.values_list("after__status", flat=True)) == [claim.status]
    assert [m.subject for m in mail.outbox] == ["A decision on your claim"]


def test_the_claimant_is_told_of_the_decision_once_in_their_language(incident):
    claim = Claim.objects.create(
        incident=incident, user_id=100007, channel="staff", kind="bad_fill", status="matched", language="zh-hans"
    )
    ClaimItem.objects.create(claim=claim, item=item(100007, "fill:982009:Ask"))
    ann = person("ann", "support")
    mail.outbox.clear()

    claim_approve(claim_id=claim.id, actor=ann)
    item_send_back(item_id=item(100007, "fill:982009:Ask").id, actor=ann, reason="check the price")
    claim_approve(claim_id=claim.id, actor=ann)

    assert [m.subject for m in mail.outbox] == ["您的赔偿申请已有处理决定"]
    assert "您的赔偿申请已获批准" in mail.outbox[0].body


def test_an_amount_set_for_an_unpriced_item_stands_when_detection_still_has_no_price(incident):
    unpriced = item(100021, "fill:982025:Ask")
    carl, ann, dora = person("carl", "approver"), person("ann", "support"), person("dora", "approver")
    item_amount_set(item_id=unpriced.id, actor=carl, amount="12.5", reason="priced from the order book")

    call_command("detect", SLUG, "--user", "100021", stdout=io.StringIO())  # still no price for it
    item_approve(item_id=unpriced.id, actor=ann)
    item_approve(item_id=unpriced.id, actor=dora)

    unpriced.refresh_from_db()
    assert (unpriced.flagged_at, unpriced.status, unpriced.amount) == (None, "approved", Decimal("12.500000"))


# --- approve_items ---


def approve_items(*args) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("approve_items", SLUG, *args, stdout=out, stderr=err)
        return 0, out.getvalue()
    except SystemExit as exc:
        return exc.code, out.getvalue() + err.getvalue()


def test_approve_items_approves_what_the_person_may_and_says_why_it_skipped_the_rest(incident):
    StaffFactory(username="ann", roles=["support"])
    undecided = Item.objects.filter(status__in=["computed", "needs_review"])
    one_tier = undecided.filter(approval="one", status="computed").count()
    two_tier = undecided.filter(approval="two", status="computed").count()
    review = undecided.filter(status="needs_review").count()

    status, out = approve_items("--by", "ann")

    assert status == 0
    assert out.splitlines()[0] == (
        f"{one_tier} item(s) approved, {two_tier} approval(s) given that await another, {review} skipped."
    )
    assert f"skipped {review}: needs review: an amount must be set first" in out
    assert approve_items("--by", "ann")[1].splitlines()[1].startswith(f"  skipped {two_tier}: ann has already approved")


def test_approve_items_max_usdc_is_inclusive_and_skips_unknown_values(incident):
    StaffFactory(username="ann", roles=["support"])
    middle = item(100007, "fill:982009:Ask")  # 4,604.36 USDC

    _, below = approve_items("--by", "ann", "--max-usdc", "4604.35")
    middle.refresh_from_db()
    assert middle.status == "computed"
    _, at = approve_items("--by", "ann", "--max-usdc", "4604.36")

    middle.refresh_from_db()
    assert middle.status == "approved"
    unknown = Item.objects.filter(status__in=["computed", "needs_review"], usdc_value__isnull=True).count()
    assert f"skipped {unknown}: its USDC value is unknown (--max-usdc skips it)" in at


def test_approve_items_refuses_someone_who_holds_no_approving_role(incident):
    StaffFactory(username="fin", roles=["finance"])

    status, out = approve_items("--by", "fin")

    assert status == 1 and "fin holds no role that approves" in out
    assert not ItemApproval.objects.exists()
