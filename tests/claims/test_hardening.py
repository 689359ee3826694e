"""Issue 9's findings: what an attacker found in the claimant's pages and the API, each reproduced."""

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from claims.models import Claim

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = "sample-2025-07-03"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
ON_FILE = "trader100056@example.com"


@pytest.fixture
def incident(open_sample_incident):
    return open_sample_incident


def form_data(**changes):
    data = {
        "user_id": "100056",
        "email": ON_FILE,
        "kind": "liquidation",
        "trade_id": "982069",
        "description": "I was liquidated",
    }
    data.update(changes)
    return data


# --- 1. account probing through the web form ---


@pytest.mark.parametrize("email", [ON_FILE, "someone.else@example.com"])
def test_a_refused_attachment_is_refused_alike_whether_or_not_the_account_matches(client, incident, email):
    response = client.post(
        f"/claims/new/{SLUG}/",
        form_data(email=email, attachments=SimpleUploadedFile("x.gif", b"GIF89a" + b"\x00" * 32)),
    )

    assert response.status_code == 400
    assert "x.gif is not a PNG, JPEG or PDF file" in response.content.decode()
    assert not Claim.objects.exists() and not mail.outbox


def test_a_matching_and_a_wrong_pair_get_the_same_answer_after_the_same_work(client, incident, settings, monkeypatch):
    from claims import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = False  # with a broker, as in production
    enqueued = []
    monkeypatch.setattr(tasks.web_submission_file_task, "delay", lambda **kwargs: enqueued.append(kwargs))
    answers = []
    for email in (ON_FILE, "someone.else@example.com"):
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                f"/claims/new/{SLUG}/", form_data(email=email, attachments=SimpleUploadedFile("shot.png", PNG))
            )
        answers.append(
            (
                response.status_code,
                response.get("Location"),
                len(queries),
                [q["sql"].split()[0] for q in queries.captured_queries],
            )
        )

    assert answers[0] == answers[1]
    assert answers[0][:2] == (302, "/claims/sent/")
    assert len(enqueued) == 2


def test_the_task_files_the_claim_for_a_matching_pair_only_and_keeps_nothing_of_the_other(client, incident):
    client.post(f"/claims/new/{SLUG}/", form_data(attachments=SimpleUploadedFile("shot.png", PNG)))
    client.post(
        f"/claims/new/{SLUG}/",
        form_data(
            email="someone.else@example.com", description="probe", attachments=SimpleUploadedFile("probe.png", PNG)
        ),
    )

    claim = Claim.objects.get()
    assert (claim.user_id, claim.status, claim.description) == (100056, "unverified", "I was liquidated")
    assert [a.original_name for a in claim.attachments.all()] == ["shot.png"]
    assert [m.to for m in mail.outbox] == [[ON_FILE]]
    from claims.models import ClaimSubmission

    kept = list(ClaimSubmission.objects.values_list("status", "data"))
    assert sorted(status for status, _ in kept) == ["discarded", "filed"]
    assert all(data == {} for _, data in kept)  # nothing typed is kept once the submission is handled


# --- 4. uploads keep the client's extension ---

HTML_BEHIND_PNG = b"\x89PNG\r\n\x1a\n<html><script>alert(document.cookie)</script></html>"


@pytest.mark.parametrize("name", ["x.html", "x.svg", "x.htm"])
def test_an_upload_is_stored_under_the_type_its_content_has_not_its_name(client, incident, name):
    client.post(f"/claims/new/{SLUG}/", form_data(attachments=SimpleUploadedFile(name, HTML_BEHIND_PNG)))

    attachment = Claim.objects.get().attachments.get()
    assert attachment.file.name.endswith(".png") and attachment.content_type == "image/png"
    assert attachment.original_name == name


def _attachment(client, incident, name="shot.pdf", content=b"%PDF-1.7 ..."):
    client.post(f"/claims/new/{SLUG}/", form_data(attachments=SimpleUploadedFile(name, content)))
    return Claim.objects.get().attachments.get()


def test_attachments_are_served_to_staff_only_as_downloads_with_a_sandbox(client, incident):
    from ..factories import StaffFactory

    pdf = _attachment(client, incident)
    url = f"/admin/claims/claim/attachment/{pdf.id}/"
    anonymous = client.get(url)
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    served = client.get(url)

    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert served.status_code == 200 and b"".join(served.streaming_content) == b"%PDF-1.7 ..."
    assert served["Content-Type"] == "application/pdf"
    assert served["Content-Disposition"] == 'attachment; filename="shot.pdf"'
    assert served["X-Content-Type-Options"] == "nosniff"
    assert served["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert "no-store" in served["Cache-Control"]


def test_an_image_is_shown_inline_to_staff_and_its_name_cannot_break_the_header(client, incident):
    from ..factories import StaffFactory

    image = _attachment(client, incident, name='a"b\r\nX-Evil: 1.png', content=PNG)
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    served = client.get(f"/admin/claims/claim/attachment/{image.id}/")

    assert served["Content-Type"] == "image/png"
    assert served["Content-Disposition"].startswith("inline; filename=")
    assert "\r" not in served["Content-Disposition"] and "\n" not in served["Content-Disposition"]
    assert "X-Evil" not in served


def test_staff_without_a_role_or_permission_get_no_attachment(client, incident):
    from ..factories import StaffFactory

    pdf = _attachment(client, incident)
    client.force_login(StaffFactory(username="nobody"))

    assert client.get(f"/admin/claims/claim/attachment/{pdf.id}/").status_code == 403


# --- 5. JSON API errors that are not JSON ---


def _front_end(user_id="100056"):
    from rest_framework.test import APIClient

    from claims.api_auth import token_digest
    from claims.models import ApiClient

    ApiClient.objects.get_or_create(name="front end", defaults={"token_hash": token_digest("fe"), "scopes": ["claims"]})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token fe", HTTP_X_CLAIMDESK_USER=user_id)
    return client


def _raw_post(client, body: bytes):
    return client.generic("POST", "/api/claims/", body, content_type="application/json")


@pytest.mark.parametrize("field", ["kind", "language"])
def test_a_lone_surrogate_in_a_choice_is_a_json_400(incident, field):
    body = f'{{"incident": "{SLUG}", "kind": "liquidation", "{field}": "\\ud800"}}'.encode()

    response = _raw_post(_front_end(), body)

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert field in response.json()


def test_json_nested_100000_deep_is_a_json_400(incident):
    response = _raw_post(_front_end(), b"[" * 100_000 + b"]" * 100_000)

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_a_body_over_the_limit_is_a_json_400(incident, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = _raw_post(_front_end(), b'{"description": "' + b"x" * 5000 + b'"}')

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert "too large" in response.json()["detail"]


def test_an_unknown_api_path_is_a_json_404(client, incident):
    response = client.get("/api/no-such-thing/")

    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not Found"}


# --- 6. throttle keys ---


def test_a_user_header_with_leading_zeros_is_refused_saying_why(incident):
    response = _front_end("0100056").get("/api/claims/")

    assert response.status_code == 400
    assert response.json() == {
        "X-Claimdesk-User": ["must be the userId as the exchange writes it: digits without leading zeros, e.g. 100056"]
    }


def test_behind_trusted_proxies_each_client_address_has_its_own_web_budget(client, incident, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.WEB_THROTTLE = {**settings.WEB_THROTTLE, "claim": (1, 3600)}
    via_proxy = {"REMOTE_ADDR": "10.0.0.1"}

    first = client.post(f"/claims/new/{SLUG}/", form_data(), HTTP_X_FORWARDED_FOR="203.0.113.7", **via_proxy)
    other = client.post(f"/claims/new/{SLUG}/", form_data(), HTTP_X_FORWARDED_FOR="198.51.100.9", **via_proxy)
    again = client.post(f"/claims/new/{SLUG}/", form_data(), HTTP_X_FORWARDED_FOR="203.0.113.7", **via_proxy)
    spoofed = client.post(f"/claims/new/{SLUG}/", form_data(), HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7", **via_proxy)

    assert (first.status_code, other.status_code, again.status_code) == (302, 302, 429)
    assert spoofed.status_code == 429  # a client cannot pick its address by prepending one
    assert int(again["Retry-After"]) > 0


# --- 7. amount parsing ---


@pytest.mark.parametrize("amount", ["1_000", "١٢٣", "１２３", "-0", "1e3", " 12", "NaN"])
def test_only_plain_ascii_decimals_are_amounts_in_the_api(incident, amount):
    response = _front_end().post(
        "/api/claims/", {"incident": SLUG, "kind": "other", "claimed_amount": amount}, format="json"
    )

    assert response.status_code == 400 and "claimed_amount" in response.json()
    assert not Claim.objects.exists()


@pytest.mark.parametrize("amount", ["1_000", "١٢٣", "１２３", "-0"])
def test_only_plain_ascii_decimals_are_amounts_in_the_web_form(client, incident, amount):
    response = client.post(f"/claims/new/{SLUG}/", form_data(claimed_amount=amount, claimed_asset="USDC"))

    assert response.status_code == 400
    assert not Claim.objects.exists()


def test_a_plain_amount_is_taken_exactly(incident):
    response = _front_end().post(
        "/api/claims/", {"incident": SLUG, "kind": "other", "claimed_amount": "1000.50"}, format="json"
    )

    assert response.status_code == 201 and response.json()["claimed_amount"] == "1000.500000000000000000"


def test_an_incident_file_takes_plain_decimal_limits_only(incident, tmp_path):
    import json

    from django.core.management import CommandError, call_command

    from ..conftest import JULY3

    data = json.loads((JULY3 / "incident.json").read_text())
    data["auto_approve_limit"] = "1_000"
    (tmp_path / "i.json").write_text(json.dumps(data))

    with pytest.raises(CommandError, match="auto_approve_limit"):
        call_command("load_incident", str(tmp_path / "i.json"))


# --- 8. status links never expire ---


def _status_link_made(monkeypatch, claim, days_ago: int) -> str:
    import time

    from django.core import signing

    from claims.notifications import status_path

    made_at = time.time() - days_ago * 86400
    monkeypatch.setattr(signing.time, "time", lambda: made_at)
    path = status_path(claim)
    monkeypatch.undo()
    return path


def test_a_status_link_three_years_old_no_longer_opens_the_claim(client, incident, monkeypatch):
    client.post(f"/claims/new/{SLUG}/", form_data())
    claim = Claim.objects.get()

    old = client.get(_status_link_made(monkeypatch, claim, days_ago=3 * 365))
    recent = client.get(_status_link_made(monkeypatch, claim, days_ago=179))

    assert old.status_code == 410 and "I was liquidated" not in old.content.decode()
    assert "expired" in old.content.decode()
    assert recent.status_code == 200


def test_the_claimant_gets_a_fresh_link_by_e_mail_to_the_address_on_file_once_a_day(client, incident, monkeypatch):
    client.post(f"/claims/new/{SLUG}/", form_data())
    claim = Claim.objects.get()
    old = _status_link_made(monkeypatch, claim, days_ago=400)
    mail.outbox.clear()

    sent = client.post(old)
    client.post(old)

    assert sent.status_code == 200 and "sent" in sent.content.decode()
    [message] = mail.outbox
    assert message.to == [ON_FILE]
    fresh = message.body.split("http://127.0.0.1:8000")[1].split()[0]
    assert client.get(fresh).status_code == 200


# --- one input normalisation for every channel ---


def test_an_api_claim_naming_a_market_in_lower_case_is_matched_like_the_web_forms(incident):
    response = _front_end().post(
        "/api/claims/",
        {"incident": SLUG, "kind": "liquidation", "market_symbol": " eth_usdc_perp ", "claimed_asset": "usdc"},
        format="json",
    )

    claim = Claim.objects.get()
    assert response.status_code == 201
    assert (claim.market_symbol, claim.claimed_asset) == ("ETH_USDC_PERP", "USDC")
    assert claim.status == "approved"  # matched to the policy-approved liquidation, as from the web form
