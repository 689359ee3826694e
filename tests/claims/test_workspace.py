"""The staff workspace (the case page, the queue, the dashboard) and the claimant's status page, as
people use them: what they show, the buttons each person gets, the services those buttons call,
and pages that cost a fixed number of queries."""

import io
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from claims.models import AuditRecord, Claim, ClaimItem, Item
from claims.notifications import status_path
from claims.services import claim_create

from ..factories import StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
LIQUIDATED = 100056  # fill 982069: 62.243932 USDC, approved by policy
BAD_FILL = 100007  # fill 982009: 4,604.363635 USDC, one staff approval
LARGE = 100070  # withdrawal 5109: 44,871.094 USDC, two approvals


@pytest.fixture
def incident(open_sample_incident):
    call_command("detect", SLUG, stdout=io.StringIO())
    return open_sample_incident


def file(incident, user_id: int, **references) -> Claim:
    kind = references.pop("kind")
    claim = claim_create(
        incident=incident,
        user_id=user_id,
        channel="api",
        kind=kind,
        actor=f"claimant {user_id}",
        description=references.pop("description", ""),
        references=references,
        attachments=references.pop("attachments", None),
    )
    claim.refresh_from_db()
    return claim


def case(client, incident, user_id: int):
    return client.get(f"/admin/claims/claim/case/{incident.pk}/{user_id}/")


def press(client, incident, user_id: int, action: str, obj, **data):
    return client.post(
        f"/admin/claims/claim/case/{incident.pk}/{user_id}/",
        {"action": action, "object": obj._meta.model_name, "object_id": obj.pk, **data},
        follow=True,
    )


def shown(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- the case page ---


def test_the_case_page_shows_everything_about_one_claimant(client, incident):
    claim = file(
        incident,
        LIQUIDATED,
        kind="liquidation",
        trade_id=982069,
        claimed_amount=Decimal("70"),
        claimed_asset="USDC",
        description="liquidated during the maintenance",
        attachments=[SimpleUploadedFile("shot.png", PNG), SimpleUploadedFile("s.pdf", b"%PDF-1.4 x")],
    )
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    page = case(client, incident, LIQUIDATED)

    text = page.content.decode()
    assert page.status_code == 200
    assert "trader100056@example.com" in text and "en-US" in text  # the account
    assert f"Claim {claim.number}" in text and "liquidated during the maintenance" in text
    assert "70.000000 USDC" in text and "62.243932 USDC" in text  # claimed beside found, to USDC's decimals
    [png, pdf] = claim.attachments.order_by("original_name").reverse()
    assert f'<img src="/admin/claims/claim/attachment/{png.pk}/"' in text  # shown inline
    assert f'href="/admin/claims/claim/attachment/{pdf.pk}/"' in text  # linked
    assert "was liquidated at 2684.29 while the reference price was 2631.1404" in text  # the claimant's words
    assert "approved by policy" in text and "fill:982071:Bid" in text  # every item of the user, with its tier
    assert "restore netQuantity" in text  # the findings
    assert "trade 982069" in text and ">balance<" in text  # the ledger's timeline
    assert "filed claim #" in text  # the audit trail
    assert "000000000" not in text  # no amount with 18 decimals


def test_buttons_are_exactly_the_actions_this_person_may_take_now(client, incident):
    file(incident, LARGE, kind="wrong_withdrawal", withdrawal_id=5109)
    large = Item.objects.get(user_id=LARGE, reference="withdrawal:5109")
    ann, bea = StaffFactory(username="ann", roles=["support"]), StaffFactory(username="bea", roles=["support"])
    carl, fin = StaffFactory(username="carl", roles=["approver"]), StaffFactory(username="fin", roles=["finance"])

    def buttons(user) -> str:
        client.force_login(user)
        return case(client, incident, LARGE).content.decode()

    assert f'value="{large.pk}"><button name="action" value="approve">' in buttons(ann)
    client.force_login(ann)
    press(client, incident, LARGE, "approve", large)
    assert 'value="approve"' not in buttons(ann).split(f'id="item-{large.pk}"')[1].split("</article>")[0]
    assert 'value="approve"' not in buttons(bea).split(f'id="item-{large.pk}"')[1].split("</article>")[0]
    assert 'value="approve"' in buttons(carl).split(f'id="item-{large.pk}"')[1].split("</article>")[0]
    assert '<button name="action"' not in buttons(fin) and "1 still needed" in buttons(fin)


def test_a_button_calls_the_service_and_a_refusal_is_a_message(client, incident):
    file(incident, LARGE, kind="wrong_withdrawal", withdrawal_id=5109)
    large = Item.objects.get(user_id=LARGE, reference="withdrawal:5109")
    client.force_login(StaffFactory(username="ann", roles=["support"]))
    first = press(client, incident, LARGE, "approve", large)
    client.force_login(StaffFactory(username="bea", roles=["support"]))

    refused = press(client, incident, LARGE, "approve", large)  # a forged press: no button was shown

    large.refresh_from_db()
    assert shown(first) == ["Approve: 1 changed."]
    assert refused.status_code == 200 and refused.request["PATH_INFO"].endswith(f"/{LARGE}/")
    assert shown(refused)[0].startswith("Approve: 1 skipped (the second approval must come from an approver")
    assert large.status == "computed" and large.approvals.count() == 1


def test_the_case_page_acts_only_on_its_own_claimant(client, incident):
    other = Item.objects.get(user_id=BAD_FILL, reference="fill:982009:Ask")
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    response = press(client, incident, LIQUIDATED, "approve", other)

    other.refresh_from_db()
    assert shown(response) == ["That item is not in this case."] and other.status == "computed"


def test_a_reason_is_asked_and_recorded_for_a_rejection(client, incident):
    item = Item.objects.get(user_id=BAD_FILL, reference="fill:982009:Ask")
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    refused = press(client, incident, BAD_FILL, "reject", item, reason="  ")
    done = press(client, incident, BAD_FILL, "reject", item, reason="a normal fill")

    item.refresh_from_db()
    assert "needs a reason" in shown(refused)[0]
    assert shown(done) == ["Reject: 1 changed."] and item.status == "rejected"


def test_assigning_a_claim_is_recorded_and_shown_in_its_history(client, incident):
    claim = file(incident, BAD_FILL, kind="bad_fill", trade_id=982009)
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    press(client, incident, BAD_FILL, "assign_to_me", claim)
    again = client.post(
        "/admin/claims/claim/", {"action": "assign_to_me", ACTION_CHECKBOX_NAME: [claim.pk]}, follow=True
    )
    history = client.get(f"/admin/claims/claim/{claim.pk}/history/").content.decode()

    claim.refresh_from_db()
    assert claim.assigned_to.username == "ann"
    assert shown(again) == [f"Assign: 1 skipped (already assigned to ann) — #{claim.pk}."]
    record = AuditRecord.objects.get(object_type="claim", object_id=claim.pk, action="assigned")
    assert (record.actor, record.after["assigned_to"]) == ("ann", "ann")
    assert ">assigned<" in history


# --- the queue ---


def test_the_queue_shows_amounts_to_the_asset_decimals_and_claimed_beside_found(client, incident):
    file(incident, LIQUIDATED, kind="liquidation", trade_id=982069, claimed_amount=Decimal("70"), claimed_asset="USDC")
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    items = client.get("/admin/claims/item/").content.decode()
    claims = client.get("/admin/claims/claim/").content.decode()

    assert "62.243932 USDC" in items and "70.000000 USDC" in items and "2.25970000 BTC" in items
    assert "70.000000 USDC" in claims and "62.243932 USDC" in claims
    assert "000000000" not in items + claims
    assert f'href="/admin/claims/claim/case/{incident.pk}/{LIQUIDATED}/"' in items + claims


@pytest.mark.parametrize("term", ["trader100056@example.com", "982069", "100056", "CD-{claim}"])
def test_the_queue_finds_a_claimant_by_what_they_quote(client, incident, term):
    claim = file(incident, LIQUIDATED, kind="liquidation", trade_id=982069)
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    items = client.get("/admin/claims/item/", {"q": term.format(claim=claim.pk)})
    claims = client.get("/admin/claims/claim/", {"q": term.format(claim=claim.pk)})

    assert {i.user_id for i in items.context["cl"].result_list} == {LIQUIDATED}
    assert [c.pk for c in claims.context["cl"].result_list] == [claim.pk]


def test_the_queue_finds_by_withdrawal_and_order(client, incident):
    client.force_login(StaffFactory(username="ann", roles=["support"]))
    from exchange.models import Fill

    order = Fill.objects.get(trade_id=982009, user_id=BAD_FILL).order_id

    by_withdrawal = client.get("/admin/claims/item/", {"q": "5109"}).context["cl"].result_list
    by_order = client.get("/admin/claims/item/", {"q": order}).context["cl"].result_list

    assert [i.reference for i in by_withdrawal] == ["withdrawal:5109"]
    assert [i.reference for i in by_order] == ["fill:982009:Ask"]


def test_waiting_for_me_lists_what_this_person_may_approve_now(client, incident):
    large = Item.objects.get(user_id=LARGE, reference="withdrawal:5109")
    ann = StaffFactory(username="ann", roles=["support"])
    client.force_login(ann)
    client.post("/admin/claims/item/", {"action": "approve", ACTION_CHECKBOX_NAME: [large.pk]})

    mine = {i.pk for i in client.get("/admin/claims/item/", {"mine": "approve"}).context["cl"].result_list}
    client.force_login(StaffFactory(username="carl", roles=["approver"]))
    carls = {i.pk for i in client.get("/admin/claims/item/", {"mine": "approve"}).context["cl"].result_list}

    undecided = set(Item.objects.filter(status="computed", flagged_at__isnull=True).values_list("pk", flat=True))
    assert mine == undecided - {large.pk}  # ann approved it; a second support approval would be refused
    assert carls == undecided


def test_bulk_approval_reports_what_it_skipped_and_why(client, incident):
    one = Item.objects.get(user_id=BAD_FILL, reference="fill:982009:Ask")
    policy = Item.objects.get(user_id=LIQUIDATED, reference="fill:982069:Bid")
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    response = client.post(
        "/admin/claims/item/", {"action": "approve", ACTION_CHECKBOX_NAME: [one.pk, policy.pk]}, follow=True
    )

    assert shown(response) == [
        "Approve: 1 changed.",
        f"Approve: 1 skipped (already approved (version 1): nothing to approve) — #{policy.pk}.",
    ]


def test_any_filtered_list_exports_as_csv(client, incident):
    client.force_login(StaffFactory(username="ann", roles=["support"]))
    listing = client.get("/admin/claims/item/", {"status__exact": "needs_review"}).content.decode()

    export = client.get("/admin/claims/item/export/", {"status__exact": "needs_review"})

    rows = b"".join(export.streaming_content).decode().splitlines()
    assert 'href="/admin/claims/item/export/?status__exact=needs_review"' in listing
    assert rows[0].startswith("id,incident,userId,kind,reference,asset,amount,claimed,claimedAsset,usdcValue,status")
    assert len(rows) == 1 + Item.objects.filter(status="needs_review").count()
    assert all(",needs_review," in row for row in rows[1:])
    btc = client.get("/admin/claims/item/export/", {"q": "balance:BTC"})
    assert ",2.25970000," in b"".join(btc.streaming_content).decode()


# --- pages cost a fixed number of queries ---


def _queries(client, url: str) -> int:
    client.get(url)  # warm the process's caches first
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def _rows(incident, n: int, user_id: int = LARGE) -> None:
    """n more items of one user, each with a claim that asks for an amount and an approval."""
    Item.objects.filter(user_id__gte=300000).delete()
    items = Item.objects.bulk_create(
        Item(
            incident=incident,
            user_id=user_id,
            kind="bad_fill",
            reference=f"fill:{900000 + i}:Bid",
            asset="USDC",
            amount=Decimal("10.5"),
            status="computed",
            approval="one",
            formula="f",
            inputs={},
        )
        for i in range(n)
    )
    claims = Claim.objects.bulk_create(
        Claim(
            incident=incident,
            user_id=user_id,
            channel="web",
            kind="bad_fill",
            status="matched",
            claimed_amount=Decimal("11"),
            claimed_asset="USDC",
            trade_id=900000 + i,
        )
        for i in range(n)
    )
    ClaimItem.objects.bulk_create(ClaimItem(claim=c, item=i) for c, i in zip(claims, items))


def test_the_queue_and_the_case_page_cost_the_same_queries_for_10_or_200_rows(client, incident):
    client.force_login(StaffFactory(username="ann", roles=["support"]))
    pages = [
        "/admin/claims/item/?all=&list_per_page=",
        "/admin/claims/claim/?all=",
        f"/admin/claims/claim/case/{incident.pk}/{LARGE}/",
        "/admin/claims/item/?mine=approve&value=10k&age=1",
        "/admin/",
    ]
    _rows(incident, 10)
    few = [_queries(client, url.replace("&list_per_page=", "")) for url in pages]

    Claim.objects.filter(user_id=LARGE).delete()
    Item.objects.filter(reference__startswith="fill:9000", user_id=LARGE).delete()
    _rows(incident, 200)
    many = [_queries(client, url.replace("&list_per_page=", "")) for url in pages]

    assert many == few


# --- the dashboard ---


def test_the_dashboard_shows_the_incident_in_figures_and_charts(client, incident):
    file(incident, LIQUIDATED, kind="liquidation", trade_id=982069)
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    page = client.get("/admin/").content.decode()

    assert "July 3 maintenance (sample)" in page
    assert '<svg role="img"' in page and "http" not in page.split('<svg role="img"')[1].split("</svg>")[0].replace(
        "http://www.w3.org/2000/svg", ""
    )  # drawn here, nothing fetched
    assert "62,622.574000" in page  # USDC owed for wrong withdrawals, to USDC's decimals
    assert ">needs_review<" not in page and "need review" in page


# --- the claimant's status page ---


def test_the_status_page_compares_what_was_claimed_with_what_was_found(client, incident):
    claim = file(
        incident, LIQUIDATED, kind="liquidation", trade_id=982069, claimed_amount=Decimal("70"), claimed_asset="USDC"
    )

    page = client.get(status_path(claim), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert claim.number in page
    assert "70.000000 USDC" in page and "62.243932 USDC" in page and "Why they differ" in page
    assert "Payouts go out in batches" in page  # what happens next, for an approved claim


@pytest.mark.parametrize("language, words", [("zh-hans", "申请编号"), ("pt-br", "Número da solicitação")])
def test_the_status_page_speaks_the_claimants_language(client, incident, language, words):
    claim = file(incident, LIQUIDATED, kind="liquidation", trade_id=982069)
    Claim.objects.filter(pk=claim.pk).update(language=language)

    page = client.get(status_path(claim)).content.decode()

    assert words in page


def test_added_information_keeps_the_valid_files_and_names_the_refused_one(client, incident):
    claim = file(incident, LIQUIDATED, kind="liquidation", trade_id=982069)

    page = client.post(
        status_path(claim),
        {
            "text": "my statement",
            "attachments": [SimpleUploadedFile("good.png", PNG), SimpleUploadedFile("bad.exe", b"MZ\x90\x00")],
        },
    )
    confirmed = client.get(status_path(claim) + "?added=1").content.decode()

    text = page.content.decode()
    assert [a.original_name for a in claim.attachments.all()] == ["good.png"]
    assert "bad.exe is not a PNG, JPEG or PDF file" in text and "Some files were not added" in text
    assert "my statement" in confirmed and "we have added what you sent" in confirmed
