"""Payouts for people: finance in the admin and through the API, with the commands' rules."""

import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from claims.detectors import quantize
from claims.models import PayoutBatch, PayoutLine
from claims.services import payout_files_render
from exchange.selectors import asset_decimals

from ..factories import StaffFactory, api_client_for

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"


@pytest.fixture
def incident(open_sample_incident):
    call_command("detect", SLUG, stdout=io.StringIO())  # some items are approved by policy as detected
    return open_sample_incident


def confirmation(lines, status="paid") -> bytes:
    rows = [
        f"{line.key},{status},{'tx-' + line.key if status == 'paid' else ''},2026-01-05T10:00:00Z" for line in lines
    ]
    return ("lineKey,status,transactionId,confirmedAt\n" + "\n".join(rows) + "\n").encode()


# --- the admin ---


def test_finance_pays_a_batch_from_the_admin(client, incident):
    client.force_login(StaffFactory(username="fin", roles=["finance"]))

    created = client.post(
        "/admin/claims/incident/", {"action": "payout_batch", ACTION_CHECKBOX_NAME: [incident.id]}, follow=True
    )
    batch = PayoutBatch.objects.get()
    csv = client.get(f"/admin/claims/payoutbatch/{batch.id}/treasury/csv/")
    lines = list(batch.lines.order_by("number"))
    paid = client.post(
        "/admin/claims/payoutline/confirm/",
        {"file": SimpleUploadedFile("treasury.csv", confirmation(lines))},
        follow=True,
    )

    assert [str(m) for m in created.context["messages"]] == [
        f"{SLUG}: batch 1 created with {batch.lines.count()} line(s); "
        f'<a href="/admin/claims/payoutbatch/{batch.id}/change/">its treasury files</a>.'
    ]
    assert csv.content.decode() == payout_files_render(batch=batch)[f"{SLUG}.1.csv"]
    assert csv["Content-Disposition"] == f'attachment; filename="{SLUG}.1.csv"'
    assert [str(m) for m in paid.context["messages"]] == [
        f"treasury.csv: {len(lines)} line(s) paid, 0 failed, 0 already recorded."
    ]
    assert set(PayoutLine.objects.values_list("status", flat=True)) == {"paid"}


def test_a_rejected_confirmation_file_names_its_line_and_changes_nothing(client, incident):
    client.force_login(StaffFactory(username="fin", roles=["finance"]))
    client.post("/admin/claims/incident/", {"action": "payout_batch", ACTION_CHECKBOX_NAME: [incident.id]})
    bad = b"lineKey,status,transactionId,confirmedAt\nno-such-key,paid,tx-1,2026-01-05T10:00:00Z\n"

    page = client.post("/admin/claims/payoutline/confirm/", {"file": SimpleUploadedFile("bad.csv", bad)})

    messages = [str(m) for m in page.context["messages"]]
    assert page.status_code == 200 and any("line 2" in m and "no-such-key" in m for m in messages)
    assert set(PayoutLine.objects.values_list("status", flat=True)) == {"exported"}


def test_a_failed_line_is_released_with_a_reason_in_the_admin(client, incident):
    client.force_login(StaffFactory(username="fin", roles=["finance"]))
    client.post("/admin/claims/incident/", {"action": "payout_batch", ACTION_CHECKBOX_NAME: [incident.id]})
    line = PayoutLine.objects.order_by("id").first()
    client.post(
        "/admin/claims/payoutline/confirm/", {"file": SimpleUploadedFile("t.csv", confirmation([line], "failed"))}
    )

    client.post(
        "/admin/claims/payoutline/",
        {"action": "release", ACTION_CHECKBOX_NAME: [line.id], "apply": "1", "reason": "wrong address, corrected"},
    )

    line.refresh_from_db()
    assert (line.status, line.release_reason, line.released_by) == ("released", "wrong address, corrected", "fin")


def test_support_and_superusers_get_no_payout_action(client, admin_client, incident):
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    for who in (client, admin_client):
        who.post("/admin/claims/incident/", {"action": "payout_batch", ACTION_CHECKBOX_NAME: [incident.id]})
        assert who.get("/admin/claims/payoutline/confirm/").status_code == 403

    assert not PayoutBatch.objects.exists()


def test_the_reconciliation_report_downloads_from_the_admin(client, incident):
    client.force_login(StaffFactory(username="fin", roles=["finance"]))

    report = client.post("/admin/claims/incident/", {"action": "reconcile", ACTION_CHECKBOX_NAME: [incident.id]})

    assert report["Content-Type"] == "text/csv"
    assert report.content.decode().splitlines()[0] == "lineKey,userId,asset,expected,found,problem"


# --- the API ---


def test_finance_pays_through_the_api(incident):
    fin = api_client_for("fin", "finance")

    created = fin.post(f"/api/incidents/{SLUG}/payout-batches/", {}, format="json")
    again = fin.post(f"/api/incidents/{SLUG}/payout-batches/", {}, format="json")
    treasury = fin.get(f"/api/incidents/{SLUG}/payout-batches/1/treasury/json/")
    lines = list(PayoutLine.objects.order_by("id"))
    failed, paid = lines[0], lines[1:]
    recorded = fin.post(
        "/api/payout-confirmations/",
        {"file": SimpleUploadedFile("t.csv", confirmation(paid) + confirmation([failed], "failed").split(b"\n", 1)[1])},
        format="multipart",
    )
    released = fin.post(f"/api/payout-lines/{failed.key}/release/", {"reason": "bank refused"}, format="json")
    report = fin.get(f"/api/incidents/{SLUG}/reconciliation/")

    assert created.status_code == 201 and [ln["key"] for ln in created.json()["lines"]] == [ln.key for ln in lines]
    assert again.status_code == 200 and again.json() == {"detail": "no approved item to pay"}
    assert treasury.json()["batch"] == 1 and treasury["Content-Type"] == "application/json"
    assert recorded.status_code == 201 and (recorded.json()["paid"], recorded.json()["failed"]) == (len(paid), 1)
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert report.status_code == 200 and int(report["X-Claimdesk-Differences"]) == len(paid)  # no credit in the ledger
    assert {row.split(",")[-1] for row in report.content.decode().splitlines()[1:]} == {"missing_credit"}


def test_only_finance_pays_through_the_api(incident):
    carl = api_client_for("carl", "approver")

    refused = carl.post(f"/api/incidents/{SLUG}/payout-batches/", {}, format="json")
    report = carl.get(f"/api/incidents/{SLUG}/reconciliation/")

    assert refused.status_code == 403 and refused.json()["rule"] == "role"
    assert report.status_code == 403
    assert not PayoutBatch.objects.exists()


def test_simulated_credits_reconcile_every_paid_line_but_the_one_left_out(incident, tmp_path):
    fin = api_client_for("fin", "finance")
    fin.post(f"/api/incidents/{SLUG}/payout-batches/", {}, format="json")
    lines = list(PayoutLine.objects.order_by("id"))
    fin.post(
        "/api/payout-confirmations/", {"file": SimpleUploadedFile("t.csv", confirmation(lines))}, format="multipart"
    )

    call_command(
        "simulate_credits",
        SLUG,
        "--output",
        str(tmp_path / "credits"),
        "--leave-out",
        lines[0].key,
        stdout=io.StringIO(),
    )
    call_command("import_bundle", str(tmp_path / "credits"), stdout=io.StringIO())
    report = fin.get(f"/api/incidents/{SLUG}/reconciliation/")

    expected = quantize(lines[0].amount, asset_decimals()[lines[0].asset])
    assert report.content.decode().splitlines()[1:] == [
        f"{lines[0].key},{lines[0].user_id},{lines[0].asset},{expected:f},,missing_credit"
    ]
