"""A claimant files a claim in a real browser, in Simplified Chinese, and reads the outcome.

Chromium comes from Debian (/usr/bin/chromium), never from Playwright's downloads. Without it the
test is skipped on a developer machine; in CI (the CI variable is set) a missing browser fails.
"""

import io
import os
import re
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command

from claims.models import Claim

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SLUG = "sample-2025-07-03"
ACCOUNT = 100056  # fill 982069 was liquidated during the maintenance: 62.243932 USDC owed
EMAIL = "trader100056@example.com"  # the account's address on file (bundle/accounts.jsonl)
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists() and "CI" not in os.environ, reason="no Chromium at /usr/bin/chromium (CI installs it)"
    ),
]


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A small, valid PNG: an orange square."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xf9\xab\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def incident(open_sample_incident):
    """The July 3 sample, open for claims, with detection done."""
    call_command("detect", SLUG, stdout=io.StringIO())
    return SLUG


@pytest.fixture
def site(live_server, settings, tmp_path):
    """The live server, with links in e-mail pointing at it and uploads kept out of the tree."""
    settings.SITE_URL = live_server.url
    mail.outbox.clear()
    return live_server.url


@contextmanager
def phone_browser():
    """A page in a phone-sized headless Chromium. Playwright's sync API keeps an event loop running
    while the browser is open, and Django refuses ORM calls then: query the database outside."""
    if not CHROMIUM.exists():
        pytest.fail(f"CI is set but there is no Chromium at {CHROMIUM}: .ci/run should install it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def test_a_claimant_files_a_claim_in_chinese_and_sees_it_matched_and_approved(incident, site, tmp_path):
    attachment = tmp_path / "upload" / "liquidation.png"
    attachment.parent.mkdir()
    attachment.write_bytes(png_bytes())

    with phone_browser() as page:
        # The start page, in English at first; the claimant picks 简体中文 from the language selector.
        page.goto(site + "/")
        assert page.locator("html").get_attribute("lang") == "en"
        with page.expect_navigation():
            page.select_option("#language", "zh-hans")
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        assert page.get_by_role("heading", level=1).inner_text() == "赔偿申请"

        page.get_by_role("link", name="提交赔偿申请").click()
        page.wait_for_url(f"**/claims/new/{SLUG}/")
        assert page.get_by_role("heading", level=1).inner_text() == "提交赔偿申请"
        assert page.locator("html").get_attribute("lang") == "zh-hans"

        page.get_by_label("账户 ID").fill(str(ACCOUNT))
        page.get_by_label("账户的电子邮箱地址").fill(EMAIL)
        page.get_by_label("强制平仓").check()
        assert page.locator('input[name="kind"]:checked').get_attribute("value") == "liquidation"
        page.locator('input[name="trade_id"]').fill("982069")
        page.locator('textarea[name="description"]').fill("维护期间我的 ETH 空头仓位被强平了。")
        page.locator('input[name="attachments"]').set_input_files(str(attachment))
        page.get_by_role("button", name="提交申请").click()
        page.wait_for_url("**/claims/sent/")
        assert page.get_by_role("heading", level=1).inner_text() == "请查收您的电子邮件"

        # The confirmation link went, in Chinese, to the address on file.
        sent = [m for m in mail.outbox if "/claims/verify/" in m.body]
        assert len(sent) == 1 and sent[0].to == [EMAIL]
        assert sent[0].subject == "请确认您的赔偿申请"
        link = re.search(r"https?://\S+/claims/verify/\S+/", sent[0].body).group(0)
        assert link.startswith(site + "/")

        page.goto(link)
        page.wait_for_url("**/claims/status/*/")
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        assert page.get_by_role("heading", level=1).inner_text() == "您的赔偿申请"
        # Matched to an item of 62.24 USDC, within the auto-approval limit: approved by policy at once.
        assert page.locator("#claim-status").inner_text() == "已批准"
        items = page.locator("#items li")
        assert items.count() == 1
        item = items.first.inner_text()
        assert "62.243932 USDC" in item  # the amount, then the explanation's formula
        assert "被强平" in item and "= 62.243932 USDC" in item
        assert page.get_by_role("heading", name="您的附件").is_visible()
        assert page.locator("main ul").last.inner_text() == "liquidation.png"
        page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)

    claim = Claim.objects.get()
    assert (claim.channel, claim.language, claim.status, claim.user_id) == ("web", "zh-hans", "approved", ACCOUNT)
    assert [(a.original_name, a.content_type) for a in claim.attachments.all()] == [("liquidation.png", "image/png")]
    assert list(claim.items.values_list("reference", flat=True)) == ["fill:982069:Bid"]
