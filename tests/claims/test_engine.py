import csv
import io
import json
import random
import shutil
from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import CommandError, call_command

from claims.models import AuditRecord, DetectionRun, Finding, Incident, Item
from claims.selectors import item_export_rows

from ..conftest import JULY3

# Detection enqueues its chunks when its transaction commits, as in production: these
# tests commit for real (the tables are emptied after each).
pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def detect():
    def detect(*args):
        return run("detect", SLUG, *args)

    return detect


@pytest.fixture
def sample(july3_ledger):
    run("load_incident", str(JULY3 / "incident.json"))
    return Incident.objects.get(slug=SLUG)


def exported(slug=SLUG) -> list[list[str]]:
    return list(csv.reader(io.StringIO(run("export_items", slug))))


def expected_items() -> list[list[str]]:
    return list(csv.reader(open(JULY3 / "expected_items.csv")))


def history(item) -> list[str]:
    return list(AuditRecord.objects.filter(object_type="item", object_id=item.id).values_list("action", flat=True))


def settings_changes():
    return AuditRecord.objects.filter(object_type="incident", action="settings_changed")


def item_state():
    return sorted(
        Item.objects.values_list(
            "user_id",
            "kind",
            "reference",
            "asset",
            "amount",
            "status",
            "approval",
            "inputs",
            "flagged_amount",
            "flag_reason",
        ),
        key=repr,
    )


def test_detecting_the_sample_gives_exactly_the_expected_items(sample, detect):
    detect()

    rows = exported()
    assert rows[0] == ["incident", "userId", "kind", "reference", "asset", "amount", "status"]
    owed = [row[:6] for row in rows[1:] if row[6] != "needs_review"]
    assert [rows[0][:6], *owed] == expected_items()
    review = {f"{row[1]} {row[3]}" for row in rows[1:] if row[6] == "needs_review"}
    assert review == set((JULY3 / "expected_review.txt").read_text().splitlines())
    assert all(row[5] == "" for row in rows[1:] if row[6] == "needs_review")


def test_the_export_follows_the_policys_format(sample, detect):
    detect()

    text = run("export_items", SLUG)

    assert text.startswith("incident,userId,kind,reference,asset,amount,status\n")
    assert "sample-2025-07-03,100021,wrong_withdrawal,withdrawal:5104,BTC,0.04779000,computed\n" in text
    assert "sample-2025-07-03,100021,bad_fill,fill:982025:Ask,USDC,,needs_review\n" in text
    assert "\r" not in text


def test_the_export_sorts_user_ids_as_numbers_and_the_rest_as_text(sample):
    common = {
        "incident": sample,
        "asset": "USDC",
        "status": "computed",
        "approval": "one",
        "formula": "f",
        "inputs": {},
        "amount": Decimal("1.5"),
    }
    for user_id, kind, reference in [
        (10, "bad_fill", "fill:1:Ask"),
        (9, "liquidation", "fill:2:Bid"),
        (9, "bad_fill", "fill:10:Ask"),
        (9, "bad_fill", "fill:9:Ask"),
    ]:
        Item.objects.create(user_id=user_id, kind=kind, reference=reference, **common)

    rows = item_export_rows(incident=sample)

    assert [(r[1], r[2], r[3], r[5]) for r in rows] == [
        ("9", "bad_fill", "fill:10:Ask", "1.500000"),
        ("9", "bad_fill", "fill:9:Ask", "1.500000"),
        ("9", "liquidation", "fill:2:Bid", "1.500000"),
        ("10", "bad_fill", "fill:1:Ask", "1.500000"),
    ]


def test_approval_tiers_follow_the_usdc_value(sample, detect):
    detect()

    def item(user_id, reference):
        return Item.objects.get(user_id=user_id, reference=reference)

    small = item(100014, "position:ETH_USDC_PERP")  # 0.94 USDC <= 100: approved by policy
    middle = item(100007, "fill:982009:Ask")  # 4,604 USDC <= 10,000: one approval
    large = item(100070, "withdrawal:5109")  # 44,871 USDC: two approvals
    unpriced = item(100021, "fill:982025:Ask")
    assert (small.status, small.approval, small.usdc_value) == ("approved", "policy", Decimal("0.94"))
    assert (middle.status, middle.approval, middle.usdc_value) == ("computed", "one", Decimal("4604.36"))
    assert (large.status, large.approval) == ("computed", "two")
    assert (unpriced.status, unpriced.approval, unpriced.review_reason) == (
        "needs_review",
        "two",
        "no price for ETH_USDC_PERP at 2025-07-03T11:23:55.045000Z",
    )


def test_items_keep_their_inputs_and_the_audit_trail_records_them(sample, detect):
    detect()

    item = Item.objects.get(user_id=100056, kind="liquidation")
    assert item.formula.startswith("liquidation:")
    assert item.inputs["fill"] == "fill:982069:Bid" and "reference_price" in item.inputs
    assert history(item) == ["detected", "approved"]  # 62.24 USDC: approved by policy as it is detected


def test_detecting_twice_gives_the_same_items_and_no_duplicates(sample, detect):
    detect()
    before, records = item_state(), AuditRecord.objects.count()

    detect()

    assert item_state() == before
    assert AuditRecord.objects.count() == records
    assert DetectionRun.objects.filter(status="done").count() == 2


def test_detection_of_one_user_touches_only_that_user(sample, detect):
    output = detect("--user", "100077")

    assert set(Item.objects.values_list("user_id", flat=True)) == {100077}
    assert "missing_funds" in output and "Needing review: 0" in output


def test_a_detection_run_reports_its_progress_and_summary(sample, detect):
    output = detect("--chunk-size", "5")

    run_ = DetectionRun.objects.get()
    assert (run_.total_users, run_.done_users, run_.status, run_.chunks.count()) == (12, 12, "done", 3)
    assert "Detection #" in output and "12 users" in output
    assert "Needing review: 2" in output
    assert "USDT     23997.079" in output


def test_surpluses_and_position_corrections_are_findings_for_staff(sample, detect):
    detect()

    corrections = Finding.objects.filter(kind="position_correction")
    assert corrections.filter(user_id=100014, reference="position:ETH_USDC_PERP").exists()
    assert all(f.description.startswith("restore netQuantity") for f in corrections)
    assert not Item.objects.filter(kind="balance_surplus").exists()


def _incident_file(tmp_path, **changes):
    data = json.loads((JULY3 / "incident.json").read_text())
    data.update(changes)
    path = tmp_path / "incident.json"
    path.write_text(json.dumps(data))
    return path


def test_loading_the_same_incident_again_changes_nothing(sample):
    output = run("load_incident", str(JULY3 / "incident.json"))

    assert "unchanged" in output
    assert not settings_changes().exists()


def test_a_settings_change_is_recorded_and_detects_again(sample, detect, tmp_path):
    detect()
    policy_approved = Item.objects.get(user_id=100035, reference="fill:982042:Bid")
    assert policy_approved.status == "approved"

    output = run("load_incident", str(_incident_file(tmp_path, bad_fill_tolerance_bps=100000)), "--by", "ops")

    change = settings_changes().get()
    assert change.actor == "ops" and change.after == {"bad_fill_tolerance_bps": "100000"}
    assert "detection #" in change.reason and "Detection #" in output
    # Nothing is a bad fill at a 1000% tolerance: undecided items go, a decided one is flagged, not changed.
    assert not Item.objects.filter(kind="bad_fill", status="computed").exists()
    policy_approved.refresh_from_db()
    assert (policy_approved.amount, policy_approved.status) == (Decimal("5.724009"), "approved")
    assert policy_approved.flagged_at is not None and policy_approved.flagged_amount is None
    assert policy_approved.flag_reason == "no longer detected"


def test_an_approved_item_is_never_altered_silently(sample, detect, tmp_path):
    detect()
    item = Item.objects.get(user_id=100007, reference="fill:982009:Ask")
    Item.objects.filter(pk=item.pk).update(status="approved")

    run("load_incident", str(_incident_file(tmp_path, price_reference="mark")))

    item.refresh_from_db()
    assert item.amount == Decimal("4604.363635") and item.status == "approved"
    assert item.flagged_amount is not None and item.flagged_amount != item.amount
    flagged = AuditRecord.objects.get(object_type="item", object_id=item.id, action="flagged")
    assert (flagged.before, flagged.after) == (
        {"amount": "4604.363635"},
        {"flagged_amount": f"{item.flagged_amount.normalize():f}"},
    )


def test_a_new_import_updates_an_undecided_item(sample, detect, july3_bundle, tmp_path):
    detect()
    item = Item.objects.get(user_id=100077, kind="missing_funds")
    more = tmp_path / "more"
    more.mkdir()
    for name in ("accounts.jsonl", "assets.jsonl", "markets.jsonl"):
        shutil.copy(july3_bundle / name, more / name)
    (more / "ledger.jsonl").write_text(
        json.dumps(
            {
                "id": 99000001,
                "userId": 100077,
                "symbol": "USDT",
                "quantity": "-997.079",
                "kind": "adjustment",
                "timestamp": "2025-07-03T11:00:00.000",
            }
        )
        + "\n"
    )
    run("import_bundle", str(more))

    detect("--user", "100077")

    item.refresh_from_db()
    assert item.amount == Decimal("23000.000000")
    assert history(item) == ["detected", "updated"]


def test_a_shuffled_bundle_gives_the_same_items(tmp_path, detect):
    shuffled = tmp_path / "shuffled"
    shutil.copytree(JULY3 / "bundle", shuffled)
    rng = random.Random(3)
    for path in shuffled.glob("*.jsonl"):
        lines = path.read_text().splitlines(keepends=True)
        rng.shuffle(lines)
        path.write_text("".join(lines))
    run("import_bundle", str(shuffled))
    run("load_incident", str(JULY3 / "incident.json"))

    detect()

    assert [row[:6] for row in exported() if row[6] != "needs_review"] == expected_items()


def test_load_incident_names_a_missing_key(tmp_path):
    path = tmp_path / "incident.json"
    data = json.loads((JULY3 / "incident.json").read_text())
    del data["price_max_age"]
    path.write_text(json.dumps(data))

    with pytest.raises(CommandError, match="missing keys \\['price_max_age'\\]"):
        run("load_incident", str(path))


def test_load_incident_refuses_a_window_out_of_order(tmp_path):
    with pytest.raises(CommandError):
        run("load_incident", str(_incident_file(tmp_path, trading_resumed="2025-07-03T09:00:00Z")))
    assert not Incident.objects.exists()


def test_detect_refuses_an_unknown_incident_or_user(sample):
    with pytest.raises(CommandError, match="no incident 'nope'"):
        run("detect", "nope")
    with pytest.raises(CommandError, match="no account with userId 1"):
        run("detect", SLUG, "--user", "1")


def test_running_a_chunk_task_twice_counts_it_once(sample):
    from claims.services import detection_start
    from claims.tasks import detection_chunk_run_task

    with mock.patch("claims.services.engine._enqueue_chunks"):  # the test delivers the task itself, twice
        run_ = detection_start(incident=sample, user_ids=None, requested_by="test")
    chunk = run_.chunks.get()

    assert detection_chunk_run_task(chunk_id=chunk.id) is True
    state = item_state()
    assert detection_chunk_run_task(chunk_id=chunk.id) is False

    run_.refresh_from_db()
    assert (run_.done_users, run_.status) == (12, "done")
    assert item_state() == state


def test_detection_finds_exactly_what_the_simulator_planted(tmp_path):
    out = tmp_path / "sim"
    run("simulate_incident", str(out), "--users", "400", "--seed", "23", "--start", "2025-07-03T10:00:00Z")
    run("import_bundle", str(out))
    run("load_incident", str(out / "incident.json"))
    planted = [json.loads(line) for line in (out / "injected.jsonl").read_text().splitlines()]

    run("detect", "sim-2025-07-03")

    items = {(i.user_id, i.kind, i.reference, i.asset): i.amount for i in Item.objects.all()}
    expected = {
        (p["userId"], p["kind"], p["reference"], p["asset"]): p["amount"] and Decimal(p["amount"])
        for p in planted
        if p["expect"] in ("item", "needs_review")
    }
    assert len(expected) > 50
    assert items == expected
    surpluses = {(f.user_id, f.reference): f.quantity for f in Finding.objects.filter(kind="balance_surplus")}
    assert surpluses == {
        (p["userId"], p["reference"]): Decimal(p["amount"]) for p in planted if p["expect"] == "surplus"
    }


def test_changing_settings_in_the_admin_is_logged_and_detects_again(sample, detect, rf, admin_user):
    from django.contrib import admin
    from django.contrib.messages.storage.fallback import FallbackStorage

    from claims.admin import IncidentAdmin

    detect()
    request = rf.post("/admin/claims/incident/")
    request.user = admin_user
    request.session = {}
    request._messages = FallbackStorage(request)
    incident = Incident.objects.get(slug=SLUG)
    incident.bad_fill_tolerance_bps = 100000

    IncidentAdmin(Incident, admin.site).save_model(request, incident, form=None, change=True)

    change = settings_changes().get()
    assert (change.actor, change.after) == ("admin", {"bad_fill_tolerance_bps": "100000"})
    run_id = int(change.reason.split("#")[1].split()[0])
    assert DetectionRun.objects.get(id=run_id).status == "done"
    assert not Item.objects.filter(kind="bad_fill", status="computed").exists()
    assert Incident.objects.get(slug=SLUG).settings_version == 2


def test_a_detection_whose_chunk_tasks_were_lost_is_finished_by_the_sweep(sample):
    from datetime import timedelta

    from django.utils import timezone

    from claims.services import detection_start

    with mock.patch("claims.services.engine._enqueue_chunks"):  # the broker lost every task
        lost = detection_start(incident=sample, user_ids=None, requested_by="test", chunk_size=5)
        recent = detection_start(incident=sample, user_ids=None, requested_by="test", chunk_size=5)
    DetectionRun.objects.filter(id=lost.id).update(started_at=timezone.now() - timedelta(minutes=11))
    out = io.StringIO()

    call_command("requeue_tasks", "--minutes", "10", stdout=out)

    lost.refresh_from_db()
    recent.refresh_from_db()
    assert (lost.status, lost.done_users, recent.status) == ("done", lost.total_users, "running")
    assert f"{lost.chunks.count()} detection chunk(s)" in out.getvalue()
