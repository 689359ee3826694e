"""Staff and a claimant in a real browser (Debian's Chromium, as test_claim_form_browser.py): a support
member works a case from the queue, and a claimant files, confirms, reads the comparison and adds a
file. Screenshots go to artifacts/screenshots/ (kept by CI); no page may be wider than its window.
"""

import io
import re
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from claims.models import Claim, Item
from claims.roles import Actor
from claims.services import claim_create, item_approve

from ..factories import StaffFactory
from .test_claim_form_browser import CHROMIUM, CHROMIUM_ARGS, SLUG, TIMEOUT_MS, png_bytes

SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"  # StaffFactory's

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists() and "CI" not in __import__("os").environ,
        reason="no Chromium at /usr/bin/chromium (CI installs it)",
    ),
]


@pytest.fixture
def incident(open_sample_incident, live_server, settings):
    call_command("detect", SLUG, stdout=io.StringIO())
    settings.SITE_URL = live_server.url
    mail.outbox.clear()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return open_sample_incident


@contextmanager
def browser(width: int, height: int):
    if not CHROMIUM.exists():
        pytest.fail(f"CI is set but there is no Chromium at {CHROMIUM}: .ci/run should install it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport={"width": width, "height": height}, locale="en-US")
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            chromium.close()


def fits(page, name: str) -> None:
    """Screenshot the whole page, and check nothing makes it wider than the window."""
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= page.viewport_size["width"], f"{name} is {wide}px wide in a {page.viewport_size['width']}px window"


def messages(page) -> list[str]:
    page.wait_for_selector("ul.messagelist li")
    return [m.strip() for m in page.locator("ul.messagelist li").all_inner_texts()]


def test_a_support_member_works_a_case_from_the_queue(incident, live_server):
    bad_fill = claim_create(
        incident=incident,
        user_id=100007,
        channel="api",
        kind="bad_fill",
        description="My sell filled far below the market.",
        references={"trade_id": 982009, "claimed_amount": Decimal("5000"), "claimed_asset": "USDC"},
        attachments=[SimpleUploadedFile("fill.png", png_bytes(60, 40))],
        actor="claimant 100007",
    )
    claim_create(
        incident=incident,
        user_id=100070,
        channel="api",
        kind="wrong_withdrawal",
        references={"withdrawal_id": 5109},
        actor="claimant 100070",
    )
    item = Item.objects.get(user_id=100007, reference="fill:982009:Ask")  # one approval: within support's tier
    large = Item.objects.get(user_id=100070, reference="withdrawal:5109")  # two, one of them an approver
    item_approve(item_id=large.pk, actor=Actor.person(StaffFactory(username="ann", roles=["support"])))
    StaffFactory(username="bea", roles=["support"])

    with browser(1280, 800) as page:
        page.goto(live_server.url + "/admin/login/")
        page.fill("#id_username", "bea")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        fits(page, "dashboard")
        assert page.locator("#money").is_visible() and page.locator("#money svg").count() == 1

        # The queue, filtered to what bea may approve now: the 982009 item, not the large one.
        page.get_by_role("link", name="Items", exact=True).first.click()
        page.get_by_role("link", name="I may approve it now").click()
        page.wait_for_url("**/admin/claims/item/?mine=approve")
        listed = page.inner_text("#result_list")
        assert "fill:982009:Ask" in listed and "withdrawal:5109" not in listed
        fits(page, "queue-items")

        # The case: the claimant's words, the attachment, the item in plain words.
        page.locator("#result_list").get_by_role("link", name="100007").first.click()
        page.wait_for_url(f"**/case/{incident.pk}/100007/")
        assert "My sell filled far below the market." in page.inner_text("#claims")
        assert "4,604.363635 USDC" in page.inner_text("#claims") and "5,000.000000 USDC" in page.inner_text("#claims")
        assert page.locator("#claims img").evaluate("img => img.naturalWidth") == 60  # the image, shown inline
        with page.context.expect_page() as opened:
            page.locator("#claims figcaption a", has_text="fill.png").click()
        attachment = opened.value
        attachment.wait_for_load_state()
        assert attachment.evaluate("document.contentType") == "image/png"
        attachment.close()
        fits(page, "case")

        # Approve within her tier: one click, the item is approved and the button is gone.
        with page.expect_navigation():
            page.locator(f"#item-{item.pk}").get_by_role("button", name="Approve version 1").click()
        assert messages(page) == ["Approve: 1 changed."]
        assert page.locator(f"#item-{item.pk}").get_by_role("button", name="Approve version 1").count() == 0

        # Beyond it: the second approval of the large item must come from an approver.
        page.goto(live_server.url + "/admin/claims/item/?q=5109")
        page.locator("#result_list input.action-select").first.check()
        page.select_option("select[name=action]", "approve")
        with page.expect_navigation():
            page.get_by_role("button", name="Go").click()
        [refusal] = messages(page)
        assert refusal.startswith("Approve: 1 skipped (the second approval must come from an approver")
        page.goto(live_server.url + "/admin/claims/claim/")
        fits(page, "queue-claims")

    item.refresh_from_db()
    large.refresh_from_db()
    assert item.status == "approved" and large.status == "computed" and large.approvals.count() == 1
    assert Claim.objects.get(pk=bad_fill.pk).status == "approved"


def test_a_claimant_files_confirms_reads_the_comparison_and_adds_a_file(incident, live_server, tmp_path):
    upload = tmp_path / "statement.png"
    upload.write_bytes(png_bytes())
    wrong = tmp_path / "notes.txt"
    wrong.write_text("not a picture")

    with browser(390, 844) as page:
        page.goto(f"{live_server.url}/claims/new/{SLUG}/")
        page.get_by_label("Account ID").fill("100056")
        page.get_by_label("E-mail address of the account").fill("trader100056@example.com")
        page.get_by_label("A liquidation").check()
        page.locator('input[name="trade_id"]').fill("982069")
        page.locator('input[name="claimed_amount"]').fill("70")
        page.locator('input[name="claimed_asset"]').fill("USDC")
        page.get_by_role("button", name="Send claim").click()
        page.wait_for_url("**/claims/sent/")

        link = re.search(
            r"https?://\S+/claims/verify/\S+/", next(m.body for m in mail.outbox if "/claims/verify/" in m.body)
        ).group(0)
        page.goto(link)
        page.wait_for_url("**/claims/status/*/")
        assert re.fullmatch(r"Claim number: CD-\d+ · quote it when you write to us", page.inner_text("#claim-number"))
        assert page.inner_text("#comparison") == "You told us\t70.000000 USDC\nWe found\t62.243932 USDC"
        assert page.inner_text("#why-differ").startswith("Why they differ: We pay what the exchange's records show")
        assert page.inner_text("#next-step").startswith("What happens next: Payouts go out in batches")

        page.locator('textarea[name="text"]').fill("My statement of that day.")
        page.locator('input[name="attachments"]').set_input_files([str(upload), str(wrong)])
        with page.expect_navigation():
            page.get_by_role("button", name="Send", exact=True).click()
        assert "notes.txt is not a PNG, JPEG or PDF file" in page.inner_text("main form")
        assert "My statement of that day." in page.inner_text("#messages-added")
        assert page.inner_text("#attachments") == "statement.png"
        fits(page, "status-page")

    claim = Claim.objects.get()
    assert [a.original_name for a in claim.attachments.all()] == ["statement.png"]
