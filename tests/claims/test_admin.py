"""The admin as staff use it: actions check the person's role, refusals are messages, History is
the audit trail, and pages cost a fixed number of queries."""

import io
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from claims.models import ApprovalLimitChange, Claim, ClaimItem, DetectionRun, Item

from ..factories import StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"


@pytest.fixture
def incident(open_sample_incident):
    call_command("detect", SLUG, stdout=io.StringIO())
    return open_sample_incident


def login(client, username: str, *roles: str, permissions=()):
    user = StaffFactory(username=username, roles=list(roles))
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client.force_login(user)
    return user


def act(client, model: str, action: str, ids, **data):
    return client.post(
        f"/admin/claims/{model}/", {"action": action, ACTION_CHECKBOX_NAME: [str(i) for i in ids], **data}, follow=True
    )


def shown(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def bad_fill_claim(incident) -> Claim:
    claim = Claim.objects.create(incident=incident, user_id=100007, channel="staff", kind="bad_fill", status="matched")
    ClaimItem.objects.create(claim=claim, item=Item.objects.get(user_id=100007, reference="fill:982009:Ask"))
    return claim


# --- found when the admin was probed as an attacker ---


def test_staff_with_only_view_permission_cannot_approve_claims(client, incident):
    claims = [bad_fill_claim(incident), bad_fill_claim(incident)]
    login(client, "viewer", permissions=["view_claim"])
    mail.outbox.clear()

    response = act(client, "claim", "approve", [c.id for c in claims])

    assert response.status_code == 200
    assert set(Claim.objects.values_list("status", flat=True)) == {"matched"}
    assert not Item.objects.filter(user_id=100007, status="approved").exists()
    assert not mail.outbox


def test_staff_with_only_view_permission_cannot_start_detection(client, incident):
    login(client, "viewer", permissions=["view_incident"])
    runs = DetectionRun.objects.count()

    act(client, "incident", "detect_all_users", [incident.id])

    assert DetectionRun.objects.count() == runs


def test_a_superuser_sees_no_approval_action(admin_client, incident):
    page = admin_client.get("/admin/claims/item/")

    assert page.status_code == 200
    assert "Approve (the current version)" not in page.content.decode()


# --- actions for people ---


def test_support_approves_an_item_from_the_list(client, incident):
    item = Item.objects.get(user_id=100007, reference="fill:982009:Ask")
    login(client, "ann", "support")

    response = act(client, "item", "approve", [item.id])

    item.refresh_from_db()
    assert item.status == "approved"
    assert shown(response) == ["Approve: 1 changed."]


def test_a_refusal_is_shown_as_a_message_naming_the_rule(client, incident):
    large = Item.objects.get(user_id=100070, reference="withdrawal:5109")
    login(client, "ann", "support")
    act(client, "item", "approve", [large.id])
    client.force_login(StaffFactory(username="bea", roles=["support"]))

    response = act(client, "item", "approve", [large.id])

    large.refresh_from_db()
    assert large.status == "computed" and large.approvals.count() == 1
    [message] = shown(response)
    assert message.startswith("Approve: 1 skipped (the second approval must come from an approver")


def test_rejecting_asks_for_a_reason_first(client, incident):
    item = Item.objects.get(user_id=100007, reference="fill:982009:Ask")
    login(client, "ann", "support")

    form = act(client, "item", "reject", [item.id])
    item.refresh_from_db()
    assert item.status == "computed" and 'name="reason"' in form.content.decode()

    done = act(client, "item", "reject", [item.id], apply="1", reason="a normal fill")

    item.refresh_from_db()
    assert item.status == "rejected" and shown(done) == ["Reject: 1 changed."]


def test_an_amount_is_set_by_hand_with_a_reason(client, incident):
    item = Item.objects.get(user_id=100007, reference="fill:982009:Ask")
    login(client, "carl", "approver")

    refused = act(client, "item", "set_amount", [item.id], apply="1", amount="1.0000001", reason="r")
    done = act(client, "item", "set_amount", [item.id], apply="1", amount="4500", reason="treasury's figure")

    item.refresh_from_db()
    assert "at most 6 decimals" in shown(refused)[0]
    assert (item.amount, item.version, item.amount_set_by, item.approval) == (Decimal("4500"), 2, "carl", "two")
    assert shown(done) == ["Set amount: 1 changed."]


def test_a_second_approver_confirms_new_limits_in_the_admin(client, incident):
    change = ApprovalLimitChange.objects.create(
        incident=incident, auto_approve_limit=50, dual_approval_limit=5000, proposed_by="carl"
    )
    login(client, "carl", "approver")
    own = act(client, "approvallimitchange", "confirm", [change.id])
    client.force_login(StaffFactory(username="dora", roles=["approver"]))

    done = act(client, "approvallimitchange", "confirm", [change.id])

    incident.refresh_from_db()
    assert "carl proposed this change" in shown(own)[0]
    assert (incident.auto_approve_limit, incident.dual_approval_limit) == (Decimal("50"), Decimal("5000"))
    assert shown(done)[0] == "Confirm limits: 1 changed."


def test_the_history_page_shows_the_audit_trail_newest_first(client, incident):
    item = Item.objects.get(user_id=100007, reference="fill:982009:Ask")
    login(client, "ann", "support")
    act(client, "item", "approve", [item.id])

    page = client.get(f"/admin/claims/item/{item.id}/history/")

    text = page.content.decode()
    assert page.status_code == 200
    assert text.index(">approved<") < text.index(">detected<")  # newest first
    assert "computed" in text and ">ann<" in text and ">detection<" in text
    assert ">given<" in text  # the approval's own record


def test_the_user_form_refuses_finance_with_support(admin_client, incident):
    user = StaffFactory(username="fin", roles=["finance"])
    support = Group.objects.get(name="support")

    response = admin_client.post(
        f"/admin/auth/user/{user.id}/change/",
        {
            "username": "fin",
            "email": "fin@claimdesk.example",
            "is_active": "on",
            "is_staff": "on",
            "groups": [support.id, Group.objects.get(name="finance").id],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    assert response.status_code == 200
    assert "finance excludes support and approver" in response.content.decode()
    assert list(user.groups.values_list("name", flat=True)) == ["finance"]


# --- pages cost a fixed number of queries ---


def _queries(client, url: str) -> int:
    client.get(url)  # warm the process's caches (content types, permissions) first
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def _more_items(incident, n: int) -> None:
    Item.objects.bulk_create(
        Item(
            incident=incident,
            user_id=200000 + i,
            kind="bad_fill",
            reference=f"fill:{i}:Bid",
            asset="USDC",
            amount=Decimal("10"),
            status="computed",
            approval="one",
            formula="f",
            inputs={},
        )
        for i in range(n)
    )


def test_the_item_list_and_a_claim_page_cost_the_same_queries_for_10_or_200_rows(client, incident):
    login(client, "ann", "support")
    claim = bad_fill_claim(incident)
    _more_items(incident, 10)
    few = (_queries(client, "/admin/claims/item/?all="), _queries(client, f"/admin/claims/claim/{claim.id}/change/"))

    Item.objects.filter(user_id__gte=200000).delete()
    _more_items(incident, 200)
    for item in Item.objects.filter(user_id__gte=200000)[:100]:
        ClaimItem.objects.create(claim=claim, item=item)
    many = (_queries(client, "/admin/claims/item/?all="), _queries(client, f"/admin/claims/claim/{claim.id}/change/"))

    assert many == few
