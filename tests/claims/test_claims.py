"""Claims through the REST API and the web form: verification, matching, notifications."""

import io
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from claims.api_auth import ClaimantThrottle, token_digest
from claims.models import ApiClient, AuditRecord, Claim, ClaimItem, Incident, Item, Notification
from claims.notifications import notification_send

from ..factories import StaffFactory

# Claims enqueue matching and e-mail when their transaction commits: these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
LIQUIDATED = 100056  # fill 982069 (Bid, ETH_USDC_PERP, 11:33:53) was liquidated: 62.243932 USDC owed
# ... worth 62.24 USDC, within the auto-approval limit (100): the item is approved by policy, and a
# claim matched to it follows it to approved at once.
MATCHED_AND_APPROVED = "approved"


@pytest.fixture
def incident(open_sample_incident):
    return open_sample_incident


def api_client(scopes: list[str], *, name="front end", user_id: int | None = None) -> APIClient:
    token = "token-" + name.replace(" ", "-")
    ApiClient.objects.create(name=name, token_hash=token_digest(token), scopes=scopes)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {token}", **({"HTTP_X_CLAIMDESK_USER": str(user_id)} if user_id else {})
    )
    return client


def transitions(claim):
    """The claim's records in the audit trail."""
    return AuditRecord.objects.filter(object_type="claim", object_id=claim.id)


def post_claim(client, **body):
    return client.post("/api/claims/", {"incident": SLUG, **body}, format="json")


# --- API ---


def test_the_front_end_files_a_claim_that_is_matched_and_decided_at_once(incident):
    front = api_client(["claims"], user_id=LIQUIDATED)

    response = post_claim(front, kind="liquidation", trade_id=982069, description="liquidated during maintenance")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["channel"], body["user_id"]) == (MATCHED_AND_APPROVED, "api", LIQUIDATED)
    assert [(i["reference"], i["amount"], i["asset"], i["status"]) for i in body["items"]] == [
        ("fill:982069:Bid", "62.243932000000000000", "USDC", "approved")
    ]
    assert "liquidated at" in body["items"][0]["explanation"]
    assert [t["to_status"] for t in body["transitions"]] == ["received", "matched", "approved"]


def test_with_a_real_broker_the_new_claim_is_answered_as_stored(incident, settings, monkeypatch):
    from claims import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = False  # matching waits for a worker: the claim is answered as filed
    monkeypatch.setattr(tasks.claim_match_task, "delay", lambda claim_id: None)
    front = api_client(["claims"], user_id=LIQUIDATED)

    with CaptureQueriesContext(connection) as queries:
        created = post_claim(
            front,
            kind="liquidation",
            trade_id=982069,
            order_id="o-1",
            market_symbol="ETH_USDC_PERP",
            approximate_time="2025-07-03T13:33:53+02:00",
            claimed_amount="62.5",
            claimed_asset="USDC",
            description="liquidated",
            language="pt-br",
        )

    assert created.status_code == 201, created.content
    assert not [q for q in queries.captured_queries if q["sql"].startswith("SELECT") and "claims_claim" in q["sql"]]
    body = created.json()
    assert (body["status"], body["items"], body["claimed_amount"]) == ("received", [], "62.500000000000000000")
    assert [t["to_status"] for t in body["transitions"]] == ["received"]
    assert body == front.get(f"/api/claims/{body['id']}/").json()


def test_a_claimant_reads_their_claim_and_nobody_else_does(incident):
    mine = post_claim(api_client(["claims"], user_id=LIQUIDATED), kind="liquidation").json()["id"]
    other = api_client(["claims"], name="front end 2", user_id=100007)
    staff = api_client(["staff"], name="staff tool")

    assert api_client(["claims"], name="front end 3", user_id=LIQUIDATED).get(f"/api/claims/{mine}/").status_code == 200
    assert other.get(f"/api/claims/{mine}/").status_code == 404
    assert other.get("/api/claims/").json()["count"] == 0
    assert staff.get(f"/api/claims/{mine}/").status_code == 200


def test_claims_are_listed_with_pagination_and_filters(incident):
    front = api_client(["claims"], user_id=LIQUIDATED)
    post_claim(front, kind="liquidation", trade_id=982069)
    post_claim(front, kind="bad_fill", trade_id=982071)
    post_claim(front, kind="other", description="something else")

    listing = front.get("/api/claims/", {"kind": "bad_fill"}).json()
    matched = front.get("/api/claims/", {"status": "matched"}).json()
    approved = front.get("/api/claims/", {"status": "approved"}).json()

    assert listing["count"] == 1 and listing["results"][0]["kind"] == "bad_fill"
    assert {c["kind"] for c in matched["results"]} == {"bad_fill"}  # 4,604 USDC: awaits a person's approval
    assert {c["kind"] for c in approved["results"]} == {"liquidation"}
    assert "next" in listing and "previous" in listing


def test_a_claim_after_claims_close_is_refused_and_nothing_is_stored(incident):
    Incident.objects.filter(pk=incident.pk).update(claims_close=timezone.now() - timedelta(seconds=1))

    response = post_claim(api_client(["claims"], user_id=LIQUIDATED), kind="liquidation")

    assert response.status_code == 400
    assert "closed" in response.json()["incident"][0]
    assert not Claim.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "stolen"}, "kind"),
        ({"kind": "liquidation", "trade_id": "abc"}, "trade_id"),
        ({"kind": "liquidation", "claimed_amount": "12,5"}, "claimed_amount"),
        ({"kind": "liquidation", "claimed_amount": "-1"}, "claimed_amount"),
        ({"kind": "liquidation", "approximate_time": "yesterday"}, "approximate_time"),
        ({"kind": "liquidation", "incident": "no-such-incident"}, "incident"),
        ({}, "kind"),
    ],
)
def test_malformed_input_answers_400_naming_the_field_and_stores_nothing(incident, body, field):
    response = api_client(["claims"], user_id=LIQUIDATED).post(
        "/api/claims/", {"incident": SLUG, **body}, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()
    assert not Claim.objects.exists()


def test_a_front_end_call_must_name_its_user(incident):
    response = post_claim(api_client(["claims"]), kind="liquidation")

    assert response.status_code == 400 and "X-Claimdesk-User" in response.json()


def test_malformed_json_answers_400(incident):
    client = api_client(["claims"], user_id=LIQUIDATED)

    response = client.post("/api/claims/", data="{not json", content_type="application/json")

    assert response.status_code == 400 and "detail" in response.json()


@pytest.mark.parametrize("body", ["null", "[]", '"a claim"'])
def test_a_body_that_is_not_an_object_answers_400_as_a_whole(incident, body):
    client = api_client(["claims"], user_id=LIQUIDATED)

    response = client.post("/api/claims/", data=body, content_type="application/json")

    assert response.status_code == 400 and list(response.json()) == ["non_field_errors"]
    assert not Claim.objects.exists()


def test_a_body_of_an_unsupported_type_answers_415_as_documented(incident, client):
    front = api_client(["claims"], user_id=LIQUIDATED)

    response = front.post("/api/claims/", data="kind=other", content_type="text/plain")

    assert response.status_code == 415 and "detail" in response.json()
    assert "415" in client.get("/api/schema/?format=json").json()["paths"]["/api/claims/"]["post"]["responses"]


def test_callers_without_a_valid_token_or_scope_are_refused(incident):
    assert APIClient().get("/api/claims/").status_code in (401, 403)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert bad.get("/api/claims/").status_code == 401
    assert api_client(["claims"], user_id=LIQUIDATED).get("/api/incidents/").status_code == 403


def apiclient_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/claims/").status_code in (200, 401)
    return sum("claims_apiclient" in q["sql"] for q in queries.captured_queries)


def test_a_token_is_looked_up_once_and_its_revocation_refused_at_once(incident):
    front = api_client(["claims"], user_id=LIQUIDATED)

    assert [apiclient_queries(front), apiclient_queries(front)] == [1, 0]
    client = ApiClient.objects.get(name="front end")
    client.is_active = False
    client.save()  # as the admin does

    assert front.get("/api/claims/").status_code == 401


def test_a_token_revoked_by_another_process_is_refused_within_the_cache_time(incident, settings, monkeypatch):
    from claims import api_auth

    front = api_client(["claims"], user_id=LIQUIDATED)
    assert front.get("/api/claims/").status_code == 200
    ApiClient.objects.update(is_active=False)  # no signal here: as if another process had saved it
    clock = api_auth.time.monotonic()

    monkeypatch.setattr(api_auth.time, "monotonic", lambda: clock + settings.API_CLIENT_CACHE_SECONDS - 1)
    assert front.get("/api/claims/").status_code == 200
    monkeypatch.setattr(api_auth.time, "monotonic", lambda: clock + settings.API_CLIENT_CACHE_SECONDS + 1)
    assert front.get("/api/claims/").status_code == 401


def test_throttling_answers_429(incident, monkeypatch):
    monkeypatch.setitem(ClaimantThrottle.THROTTLE_RATES, "claimant", "2/min")
    front = api_client(["claims"], user_id=LIQUIDATED)

    statuses = [post_claim(front, kind="other", description=f"claim {n}").status_code for n in range(3)]

    assert statuses == [201, 201, 429]


def test_staff_read_incidents_items_and_the_export(incident):
    call_command("detect", SLUG, stdout=io.StringIO())
    staff = api_client(["staff"], name="staff tool")

    incidents = staff.get("/api/incidents/").json()
    items = staff.get(f"/api/incidents/{SLUG}/items/", {"kind": "liquidation"}).json()
    export = staff.get(f"/api/incidents/{SLUG}/items-export/")

    assert incidents["results"][0]["slug"] == SLUG
    assert items["count"] == 4 and {i["kind"] for i in items["results"]} == {"liquidation"}
    out = io.StringIO()
    call_command("export_items", SLUG, stdout=out)
    assert export.status_code == 200 and b"".join(export.streaming_content).decode() == out.getvalue()


def test_the_export_sorts_text_by_code_point_whatever_the_collation(incident):
    from decimal import Decimal

    from claims.selectors import item_export_rows

    references = ["withdrawal:b", "withdrawal:B", "withdrawal:_", "withdrawal:é", "withdrawal:a"]
    for user_id in (100056, 9):
        for reference in references:
            Item.objects.create(
                incident=incident,
                user_id=user_id,
                kind="wrong_withdrawal",
                reference=reference,
                asset="USDC",
                amount=Decimal("1.5"),
                status="computed",
                approval="one",
                formula="f",
                inputs={},
            )

    with CaptureQueriesContext(connection) as queries:
        rows = [(row[1], row[3], row[5]) for row in item_export_rows(incident=incident)]

    expected = sorted(references)  # code points: "B" < "_" < "a" < "b" < "é"
    if connection.vendor == "postgresql":  # whatever the database's collation (this one may be C already)
        assert 'COLLATE "C"' in queries.captured_queries[-1]["sql"]
    assert rows == [(str(user_id), reference, "1.500000") for user_id in (9, 100056) for reference in expected]


def test_staff_may_file_for_a_user(incident):
    staff = api_client(["staff"], name="staff tool")

    response = post_claim(staff, kind="missing_funds", user_id=100077, claimed_asset="USDT")

    assert response.status_code == 201
    assert (response.json()["channel"], response.json()["status"]) == ("staff", "matched")


def test_the_openapi_schema_and_docs_are_served(incident):
    assert APIClient().get("/api/schema/").status_code == 200
    docs = APIClient().get("/api/docs/")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()


# --- matching on the sample bundle ---


def file(user_id: int, **fields) -> Claim:
    response = post_claim(api_client(["claims"], name=f"fe-{Claim.objects.count()}", user_id=user_id), **fields)
    assert response.status_code == 201, response.content
    return Claim.objects.get(public_id=response.json()["id"])


def test_a_claim_at_a_liquidation_is_matched_to_its_item(incident):
    claim = file(LIQUIDATED, kind="liquidation", market_symbol="ETH_USDC_PERP")

    assert claim.status == MATCHED_AND_APPROVED
    assert list(transitions(claim).values_list("after__status", flat=True)) == ["received", "matched", "approved"]
    assert list(claim.items.values_list("reference", flat=True)) == ["fill:982069:Bid"]


def test_a_claim_at_a_favourable_fill_is_answered_no_loss_with_the_numbers(incident):
    claim = file(100007, kind="bad_fill", trade_id=982011)

    assert claim.status == "no_loss"
    assert claim.no_loss_details[0]["reference"] == "fill:982011:Bid"
    assert claim.no_loss_details[0]["inputs"]["reference_price"]["price"]
    assert not claim.items.exists()


def test_a_claim_at_nothing_is_unmatched_for_staff_with_the_candidates(incident):
    claim = file(100007, kind="liquidation", trade_id=1)

    assert claim.status == "unmatched"
    assert {
        "kind": "bad_fill",
        "reference": "fill:982009:Ask",
        "asset": "USDC",
        "amount": "4604.363635000000000000",
    } in claim.candidate_events


def test_a_claim_of_the_wrong_kind_tells_staff_what_the_claimant_has(incident):
    claim = file(LIQUIDATED, kind="bad_fill", trade_id=982069)

    assert claim.status == "unmatched"
    assert claim.staff_note == "nothing of kind bad_fill fits; the claimant has items of other kinds: liquidation"


def test_two_claims_at_one_item_owe_it_once(incident):
    first = file(LIQUIDATED, kind="liquidation", trade_id=982069)
    second = file(
        LIQUIDATED,
        kind="liquidation",
        approximate_time="2025-07-03T11:10:00Z",
        description="the liquidation around 11:10",
    )

    item = Item.objects.get(user_id=LIQUIDATED, kind="liquidation")
    assert first.status == second.status == MATCHED_AND_APPROVED
    assert ClaimItem.objects.filter(item=item).count() == 2
    assert Item.objects.filter(user_id=LIQUIDATED, kind="liquidation").count() == 1


def test_the_approximate_time_must_be_within_30_minutes(incident):
    too_late = file(LIQUIDATED, kind="liquidation", approximate_time="2025-07-03T12:03:54Z")
    in_time = file(LIQUIDATED, kind="liquidation", approximate_time="2025-07-03T12:03:53Z")

    assert (too_late.status, in_time.status) == ("unmatched", MATCHED_AND_APPROVED)


def test_a_second_claim_with_the_same_references_is_merged_into_the_first(incident):
    first = file(LIQUIDATED, kind="liquidation", trade_id=982069)

    again = file(LIQUIDATED, kind="liquidation", trade_id=982069, description="me again")

    assert (again.status, again.merged_into_id) == ("merged", first.id)
    assert transitions(first).filter(reason__contains="me again").exists()


@pytest.mark.parametrize("matched_first", ["earlier", "later"])
def test_repeated_claims_received_together_are_merged_once_into_the_earlier(incident, monkeypatch, matched_first):
    from claims import tasks
    from claims.matching import claim_match

    enqueued = []
    monkeypatch.setattr(tasks.claim_match_task, "delay", lambda claim_id: enqueued.append(claim_id))
    earlier = file(LIQUIDATED, kind="liquidation", trade_id=982069)
    later = file(LIQUIDATED, kind="liquidation", trade_id=982069, description="me again")
    assert enqueued == [earlier.id, later.id] and {earlier.status, later.status} == {"received"}

    order = enqueued if matched_first == "earlier" else enqueued[::-1]
    outcomes = {claim_id: claim_match(claim_id=claim_id) for claim_id in order}

    earlier.refresh_from_db()
    later.refresh_from_db()
    assert outcomes == {earlier.id: "matched", later.id: "merged"}
    assert (earlier.status, earlier.merged_into_id) == (MATCHED_AND_APPROVED, None)
    assert (later.status, later.merged_into_id) == ("merged", earlier.id)
    assert [claim_match(claim_id=claim_id) for claim_id in order] == [None, None]
    assert Notification.objects.filter(kind="acknowledgement").count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time")
def test_repeated_claims_matched_at_the_same_time_by_two_workers_merge_once(incident, monkeypatch):
    import threading

    from claims import tasks
    from claims.matching import claim_match

    enqueued = []
    monkeypatch.setattr(tasks.claim_match_task, "delay", lambda claim_id: enqueued.append(claim_id))
    for n in range(3):
        file(LIQUIDATED, kind="liquidation", trade_id=982069, description=f"try {n}")
    outcomes, start = {}, threading.Barrier(len(enqueued))

    def worker(claim_id):
        try:
            start.wait()
            outcomes[claim_id] = claim_match(claim_id=claim_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(claim_id,)) for claim_id in reversed(enqueued)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    first = min(enqueued)
    assert outcomes == {first: "matched", **{claim_id: "merged" for claim_id in enqueued if claim_id != first}}
    assert set(Claim.objects.exclude(id=first).values_list("merged_into_id", flat=True)) == {first}
    assert Notification.objects.filter(kind="acknowledgement").count() == 3


def test_a_claim_whose_matching_task_was_lost_is_enqueued_again_later(incident, monkeypatch):
    from claims import tasks

    lost = []
    monkeypatch.setattr(tasks.claim_match_task, "delay", lambda claim_id: lost.append(claim_id))
    late = file(LIQUIDATED, kind="liquidation", trade_id=982069)
    recent = file(100007, kind="bad_fill", trade_id=982011)
    Claim.objects.filter(id=late.id).update(updated_at=timezone.now() - timedelta(minutes=11))
    monkeypatch.undo()
    out = io.StringIO()

    call_command("requeue_tasks", "--minutes", "10", stdout=out)

    late.refresh_from_db()
    recent.refresh_from_db()
    assert (late.status, recent.status) == (MATCHED_AND_APPROVED, "received")
    assert "1 claim(s) enqueued" in out.getvalue()
    assert Notification.objects.filter(claim=late, kind="acknowledgement").count() == 1
    call_command("requeue_tasks", stdout=out)  # nothing is late any more
    assert out.getvalue().splitlines()[-1].startswith("0 claim(s)")


def test_a_message_never_tried_is_sent_once_when_enqueued_again(incident):
    never_tried = Notification.objects.create(
        key="test:lost", kind="decision", user_id=LIQUIDATED, to="trader100056@example.com", language="en"
    )
    Notification.objects.filter(id=never_tried.id).update(created_at=timezone.now() - timedelta(minutes=30))

    call_command("requeue_tasks", stdout=io.StringIO())
    call_command("requeue_tasks", stdout=io.StringIO())

    assert len(mail.outbox) == 1 and Notification.objects.get(id=never_tried.id).status == "sent"


def test_a_claim_acknowledged_when_filed_by_the_previous_release_is_matched_and_not_acknowledged_again(
    incident, monkeypatch
):
    from claims import tasks
    from claims.matching import claim_match

    monkeypatch.setattr(tasks.claim_match_task, "delay", lambda claim_id: None)  # deployed before it ran
    claim = file(LIQUIDATED, kind="liquidation", trade_id=982069)
    Notification.objects.create(
        key=f"claim:{claim.id}:acknowledgement",
        kind="acknowledgement",
        claim=claim,
        user_id=LIQUIDATED,
        to="trader100056@example.com",
        language="en",
        status="sent",
    )

    assert claim_match(claim_id=claim.id) == "matched"
    assert Notification.objects.filter(claim=claim, kind="acknowledgement").count() == 1


def test_matching_twice_changes_nothing(incident):
    from claims.matching import claim_match

    claim = file(LIQUIDATED, kind="liquidation", trade_id=982069)
    records = transitions(claim).count()

    assert claim_match(claim_id=claim.id) is None
    assert transitions(claim).count() == records and claim.items.count() == 1


# --- notifications ---


def test_each_event_is_mailed_exactly_once_even_when_the_task_runs_twice(incident):
    file(LIQUIDATED, kind="liquidation", trade_id=982069)
    subjects = sorted(m.subject for m in mail.outbox)

    for notification in Notification.objects.all():
        assert notification_send(notification_id=notification.id) is False

    assert subjects == ["A decision on your claim", "We received your claim", "What we found for your claim"]
    assert len(mail.outbox) == 3
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    assert mail.outbox[0].to == ["trader100056@example.com"]


def test_a_failed_send_is_retried_later_and_then_sent_once(incident, settings):
    from .failing_backend import FailOnceBackend

    settings.EMAIL_BACKEND = "tests.claims.failing_backend.FailOnceBackend"
    FailOnceBackend.failed = False
    notification = Notification.objects.create(
        key="test:retry", kind="decision", user_id=LIQUIDATED, to="trader100056@example.com", language="en"
    )

    with pytest.raises(ConnectionError):
        notification_send(notification_id=notification.id)
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("pending", 1)
    assert notification_send(notification_id=notification.id) is True
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("sent", 2)


def test_messages_are_in_the_claimants_language(incident):
    file(100014, kind="other", description="zh", language="zh-hans")

    assert any("claims/status/" in m.body for m in mail.outbox)
    assert {n.language for n in Notification.objects.all()} == {"zh-hans"}


def test_users_found_but_never_heard_from_are_told_once(incident):
    call_command("detect", SLUG, stdout=io.StringIO())
    file(LIQUIDATED, kind="liquidation", trade_id=982069)
    mail.outbox.clear()

    call_command("notify_found", SLUG, stdout=io.StringIO())
    call_command("notify_found", SLUG, stdout=io.StringIO())

    found = Notification.objects.filter(kind="found")
    told = set(found.values_list("to", flat=True))
    owed_users = set(Item.objects.values_list("user_id", flat=True)) - {LIQUIDATED}
    assert found.count() == len(owed_users) == len(told)
    assert "trader100056@example.com" not in told
    # Users whose items were all approved by policy are also told, once, that their claim is decided.
    decided = Claim.objects.filter(user_id__in=owed_users, status="approved")
    assert set(Notification.objects.filter(kind="decision", claim__in=decided).values_list("user_id", flat=True)) == {
        claim.user_id for claim in decided
    }
    assert len(mail.outbox) == found.count() + decided.count()
    assert {tuple(m.to) for m in mail.outbox} <= {(address,) for address in told}


# --- the web form ---


def form_data(**changes):
    data = {
        "user_id": str(LIQUIDATED),
        "email": "trader100056@example.com",
        "kind": "liquidation",
        "trade_id": "982069",
        "description": "I was liquidated",
    }
    data.update(changes)
    return data


def verification_link() -> str:
    bodies = [m.body for m in mail.outbox if "/claims/verify/" in m.body]
    assert len(bodies) == 1
    return re.search(r"http://\S+(/claims/verify/\S+/)", bodies[0]).group(1)


def test_the_form_is_served_in_three_languages(client, incident):
    for language, text in (("en", "File a claim"), ("zh-hans", 'lang="zh-hans"'), ("pt-br", 'lang="pt-br"')):
        response = client.get(f"/claims/new/{SLUG}/", HTTP_ACCEPT_LANGUAGE=language)
        assert response.status_code == 200 and text in response.content.decode()


def test_a_web_claim_waits_for_the_link_sent_to_the_address_on_file(client, incident):
    response = client.post(f"/claims/new/{SLUG}/", form_data(attachments=[SimpleUploadedFile("shot.png", PNG)]))

    claim = Claim.objects.get()
    assert response.status_code == 302 and claim.status == "unverified"
    assert [m.to for m in mail.outbox] == [["trader100056@example.com"]]
    assert claim.attachments.get().content_type == "image/png"

    status_page = client.get(verification_link(), follow=True)

    claim.refresh_from_db()
    assert claim.status == MATCHED_AND_APPROVED
    assert "62.243932" in status_page.content.decode()


def test_a_verification_link_confirms_once_and_then_says_it_was_used(client, incident):
    client.post(f"/claims/new/{SLUG}/", form_data())
    link = verification_link()

    first, second = client.get(link), client.get(link)

    assert first.status_code == 302
    assert second.status_code == 200 and "already used" in second.content.decode()
    assert f'href="{first["Location"]}"' in second.content.decode()  # it links the status page
    assert transitions(Claim.objects.get()).filter(after__status="received").count() == 1


def test_an_expired_verification_link_is_refused(client, incident):
    from claims.models import ClaimVerification

    client.post(f"/claims/new/{SLUG}/", form_data())
    ClaimVerification.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.get(verification_link())

    assert response.status_code == 410 and "expired" in response.content.decode()
    assert Claim.objects.get().status == "unverified"


def test_no_link_is_sent_to_a_typed_address_that_is_not_on_file(client, incident):
    response = client.post(f"/claims/new/{SLUG}/", form_data(email="attacker@example.com"))

    assert response.status_code == 302
    assert mail.outbox == [] and not Claim.objects.exists()


@pytest.mark.parametrize(
    "upload, message",
    [
        (SimpleUploadedFile("fake.png", b"not really a png"), "is not a PNG, JPEG or PDF file"),
        ([SimpleUploadedFile(f"s{n}.png", PNG) for n in range(6)], "At most 5 files"),
    ],
)
def test_attachments_are_checked_by_content_and_count(client, incident, upload, message):
    response = client.post(f"/claims/new/{SLUG}/", form_data(attachments=upload))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Claim.objects.exists()


def test_a_closed_incident_refuses_web_claims_with_a_clear_message(client, incident):
    Incident.objects.filter(pk=incident.pk).update(claims_close=timezone.now() - timedelta(days=1))

    response = client.post(f"/claims/new/{SLUG}/", form_data())

    assert "closed on" in response.content.decode()
    assert not Claim.objects.exists()


def test_the_status_page_takes_more_information(client, incident):
    client.post(f"/claims/new/{SLUG}/", form_data())
    status_url = client.get(verification_link())["Location"]

    client.post(
        status_url, {"text": "here is my statement", "attachments": [SimpleUploadedFile("s.pdf", b"%PDF-1.4 test")]}
    )

    claim = Claim.objects.get()
    assert claim.attachments.get().content_type == "application/pdf"
    assert transitions(claim).filter(reason__contains="here is my statement").exists()
    assert client.get("/claims/status/not-a-valid-token/").status_code == 404


def test_staff_decisions_are_recorded_and_mailed_once(incident):
    from claims.roles import Actor
    from claims.services import claim_approve, claim_take_into_review

    claim = file(100007, kind="bad_fill", trade_id=982009)  # 4,604.36 USDC: one staff approval
    alice, bob = StaffFactory(username="alice", roles=["support"]), StaffFactory(username="bob", roles=["approver"])
    mail.outbox.clear()

    claim_take_into_review(claim_id=claim.id, actor=Actor.person(alice))
    claim_approve(claim_id=claim.id, actor=Actor.person(bob))
    again = claim_approve(claim_id=claim.id, actor=Actor.person(bob))

    claim.refresh_from_db()
    assert claim.status == "approved"
    assert [o.message for o in again] == ["already approved (version 1): nothing to approve"]
    assert list(transitions(claim).values_list("after__status", "actor")[2:]) == [
        ("in_review", "alice"),
        ("approved", "bob"),
    ]
    assert [m.subject for m in mail.outbox] == ["A decision on your claim"]


def test_an_api_client_is_created_with_a_token_shown_once(incident):
    out = io.StringIO()

    call_command("create_api_client", "exchange-web", "--scope", "claims", stdout=out)

    token = out.getvalue().split("Token (shown once): ")[1].strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}", HTTP_X_CLAIMDESK_USER=str(LIQUIDATED))
    assert client.get("/api/claims/").status_code == 200
    assert ApiClient.objects.get().token_hash != token


def test_invalid_inputs_point_at_their_errors_and_help(client, incident):
    response = client.post(f"/claims/new/{SLUG}/", form_data(user_id="abc"))

    page = response.content.decode()
    assert response.status_code == 400
    assert 'aria-invalid="true"' in page
    assert 'aria-describedby="id_user_id-help id_user_id-errors"' in page
    assert 'id="id_user_id-errors" role="alert"' in page


def test_a_position_error_is_matched_by_the_time_it_was_made_not_when_it_was_valued(incident):
    # 100014's ETH_USDC_PERP position was wrong at resumption (12:10); it is valued later, at t1.
    claim = file(100014, kind="position_error", market_symbol="ETH_USDC_PERP", approximate_time="2025-07-03T12:20:00Z")

    assert claim.status == MATCHED_AND_APPROVED  # 0.94 USDC: approved by policy
    assert list(claim.items.values_list("reference", flat=True)) == ["position:ETH_USDC_PERP"]


def test_the_web_form_is_throttled_per_address(client, incident, settings):
    settings.WEB_THROTTLE = {**settings.WEB_THROTTLE, "claim": (2, 3600)}

    statuses = [client.post(f"/claims/new/{SLUG}/", form_data(trade_id=str(n))).status_code for n in (1, 2, 3)]

    assert statuses == [302, 302, 429]
