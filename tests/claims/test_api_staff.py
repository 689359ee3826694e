"""The staff operations of the REST API: they act for a person, with that person's roles."""

import io

import pytest
from django.core.management import call_command

from claims.models import ApiClient, ApprovalLimitChange, Claim, ClaimItem, Item

from ..factories import StaffFactory, api_client_for

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"


@pytest.fixture
def one(open_sample_incident) -> Item:
    call_command("detect", SLUG, stdout=io.StringIO())
    return Item.objects.get(user_id=100007, reference="fill:982009:Ask")  # one approval


def test_a_client_bound_to_support_approves_an_item_once(one):
    ann = api_client_for("ann", "support")

    first = ann.post(f"/api/items/{one.id}/approve/", {}, format="json")
    again = ann.post(f"/api/items/{one.id}/approve/", {}, format="json")

    assert first.status_code == 200 and first.json()["status"] == "approved"
    assert [a["approver_name"] for a in first.json()["approvals"]] == ["ann"]
    assert again.status_code == 409
    assert again.json() == {"detail": "already approved (version 1): nothing to approve", "rule": "nothing to change"}


def test_a_client_bound_to_nobody_only_reads(one):
    tool = api_client_for("tool", bound=False)

    read = tool.get(f"/api/items/{one.id}/")
    write = tool.post(f"/api/items/{one.id}/approve/", {}, format="json")

    assert read.status_code == 200 and read.json()["version"] == 1
    assert write.status_code == 403 and "done by a person" in write.json()["detail"]


def test_finance_may_not_approve_and_the_front_end_may_not_call_staff_operations(one):
    fin = api_client_for("fin", "finance")
    front = api_client_for("front", scopes=("claims",), bound=False)

    refused = fin.post(f"/api/items/{one.id}/approve/", {}, format="json")
    front_end = front.post(f"/api/items/{one.id}/approve/", {}, format="json")

    assert refused.status_code == 403 and refused.json()["rule"] == "role"
    assert "only approver or support may" in refused.json()["detail"]
    assert front_end.status_code == 403
    one.refresh_from_db()
    assert one.status == "computed"


def test_a_rejection_without_a_reason_is_a_400_naming_it(one):
    response = api_client_for("ann", "support").post(f"/api/items/{one.id}/reject/", {}, format="json")

    assert response.status_code == 400 and "reason" in response.json()


def test_a_stale_version_is_refused(one):
    carl = api_client_for("carl", "approver")
    carl.post(f"/api/items/{one.id}/amount/", {"amount": "4500", "reason": "treasury"}, format="json")

    stale = api_client_for("ann", "support").post(f"/api/items/{one.id}/approve/", {"version": 1}, format="json")

    assert stale.status_code == 409
    assert stale.json()["detail"] == "version 1 is no longer current: the item is at version 2"


def test_a_claim_is_rejected_and_given_an_amount_through_the_api(one):
    claim = Claim.objects.create(
        incident=one.incident, user_id=100007, channel="staff", kind="other", status="unmatched"
    )
    carl = api_client_for("carl", "approver")

    amount = carl.post(
        f"/api/claims/{claim.public_id}/amount/",
        {"asset": "USDC", "amount": "150", "reason": "goodwill"},
        format="json",
    )
    rejected = carl.post(f"/api/claims/{claim.public_id}/reject/", {"reason": "duplicate of another"}, format="json")

    claim.refresh_from_db()
    assert amount.status_code == 201 and amount.json()["kind"] == "other"
    assert rejected.status_code == 200 and rejected.json() == [
        {"item_id": amount.json()["id"], "changed": True, "message": "rejected"}
    ]
    assert claim.status == "rejected" and ClaimItem.objects.filter(claim=claim).count() == 1


def test_new_limits_are_confirmed_by_a_second_approver_through_the_api(one):
    change = ApprovalLimitChange.objects.create(
        incident=one.incident, auto_approve_limit=50, dual_approval_limit=500, proposed_by="carl"
    )

    own = api_client_for("carl", "approver").post(f"/api/limit-changes/{change.id}/confirm/")
    done = api_client_for("dora", "approver").post(f"/api/limit-changes/{change.id}/confirm/")

    assert own.status_code == 409 and own.json()["rule"] == "four eyes"
    assert done.status_code == 200 and done.json()["status"] == "confirmed"


def test_a_staff_client_can_be_bound_to_a_person_on_the_command_line(one):
    StaffFactory(username="carl", roles=["approver"])
    out = io.StringIO()

    call_command("create_api_client", "carl's tool", "--scope", "staff", "--user", "carl", stdout=out)

    assert "acting for carl" in out.getvalue()
    assert ApiClient.objects.get(name="carl's tool").user.username == "carl"
