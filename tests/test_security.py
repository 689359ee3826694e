"""Issue 9's floor: staff sign in with two factors where money moves, repeated failures lock an
account, production settings are safe by default, the claimant's pages run no inline script."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from .factories import StaffFactory

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


@pytest.fixture
def two_factor(settings):
    settings.STAFF_2FA = True


def code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


# --- two factors ---


@pytest.mark.parametrize("roles, superuser", [(["approver"], False), (["finance"], False), ([], True)])
def test_who_moves_money_or_administers_sets_up_a_second_factor_first(client, two_factor, roles, superuser):
    person = StaffFactory(username="carl", roles=roles, is_superuser=superuser)
    client.force_login(person)

    sent = client.get("/admin/claims/item/")
    setup = client.get(sent["Location"])
    device = TOTPDevice.objects.get(user=person)
    confirmed = client.post(sent["Location"], {"token": code(device)})

    assert sent.status_code == 302 and sent["Location"].startswith("/admin/2fa/setup/?next=")
    assert setup.status_code == 200 and "otpauth" not in setup.content.decode() or "<svg" in setup.content.decode()
    assert confirmed.status_code == 302 and confirmed["Location"] == "/admin/claims/item/"
    assert client.get("/admin/claims/item/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed


def test_support_signs_in_with_a_password_alone(client, two_factor):
    client.force_login(StaffFactory(username="ann", roles=["support"]))

    assert client.get("/admin/").status_code == 200


def test_a_new_session_asks_for_the_code(client, two_factor):
    person = StaffFactory(username="carl", roles=["approver"])
    device = TOTPDevice.objects.create(user=person, name="app", confirmed=True)
    client.force_login(person)

    sent = client.get("/admin/")
    right = client.post(sent["Location"], {"token": code(device)})

    assert sent["Location"].startswith("/admin/2fa/verify/")
    assert right.status_code == 302 and client.get("/admin/").status_code == 200


def test_a_wrong_code_is_refused(client, two_factor):
    person = StaffFactory(username="carl", roles=["approver"])
    device = TOTPDevice.objects.create(user=person, name="app", confirmed=True)
    client.force_login(person)

    wrong = client.post("/admin/2fa/verify/", {"token": "000000" if code(device) != "000000" else "111111"})

    assert wrong.status_code == 200 and "does not match" in wrong.content.decode()
    assert client.get("/admin/").status_code == 302


def test_the_api_refuses_a_session_without_its_second_factor(client, two_factor):
    client.force_login(StaffFactory(username="carl", roles=["approver"]))

    response = client.get("/api/incidents/")

    assert response.status_code in (401, 403)
    assert "two-factor" in response.json()["detail"]


def test_a_redirect_after_the_code_stays_on_this_site(client, two_factor):
    person = StaffFactory(username="carl", roles=["approver"])
    device = TOTPDevice.objects.create(user=person, name="app", confirmed=True)
    client.force_login(person)

    response = client.post("/admin/2fa/verify/?next=https://evil.example/", {"token": code(device)})

    assert response["Location"] == "/admin/"


# --- sign-in lockout, passwords ---


def test_five_wrong_passwords_lock_the_account_from_that_address(client):
    StaffFactory(username="ann", roles=["support"])

    for _ in range(5):
        client.post("/admin/login/", {"username": "ann", "password": "wrong"})
    locked = client.post("/admin/login/", {"username": "ann", "password": "correct horse battery staple"})

    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_right_password_signs_in_before_the_limit(client):
    StaffFactory(username="ann", roles=["support"])
    client.post("/admin/login/", {"username": "ann", "password": "wrong"})

    response = client.post("/admin/login/", {"username": "ann", "password": "correct horse battery staple"})

    assert response.status_code == 302 and "_auth_user_id" in client.session


@pytest.mark.parametrize("password", ["short1", "1234567890123", "password1234", "annann-staff"])
def test_weak_passwords_are_refused(password):
    user = StaffFactory.build(username="annann-staff")

    with pytest.raises(ValidationError):
        validate_password(password, user)


# --- production settings and headers ---


def test_check_deploy_passes_with_the_production_settings(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "STAFF_2FA")}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="claims.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SITE_URL="https://claims.example.com",
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_production_defaults_are_safe_when_debug_is_off():
    code_ = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS >= 31536000, s.STAFF_2FA)"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "STAFF_2FA", "SECURE_SSL_REDIRECT")}
    env.update(SECRET_KEY="x" * 50, DJANGO_SETTINGS_MODULE="config.settings")

    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code_}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    refused = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "STAFF_2FA": "0"},
        capture_output=True,
        text=True,
    )

    assert result.stdout.split() == ["True", "True", "True", "True", "True"], result.stderr
    assert refused.returncode != 0 and "STAFF_2FA=0 is for development only" in refused.stderr


def test_plain_http_is_sent_to_https_when_debug_is_off(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = client.get("/")

    assert response.status_code == 301 and response["Location"].startswith("https://")


def test_the_claimants_pages_run_no_inline_script_and_the_policy_forbids_it(client, open_sample_incident):
    from claims.models import Claim
    from claims.notifications import status_path

    claim = Claim.objects.create(
        incident=open_sample_incident,
        user_id=100056,
        channel="api",
        kind="other",
        status="received",
        description="<script>alert(1)</script>",
    )
    for url in ("/", f"/claims/new/{open_sample_incident.slug}/", "/claims/sent/", status_path(claim)):
        page = client.get(url)
        html = page.content.decode()

        policy = page["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url  # every script comes from a file
        assert not re.search(r"\son[a-z]+=", html), url  # no inline event handler
        assert not re.search(r"<style|\sstyle=", html), url


@pytest.mark.django_db(transaction=True)  # the web form's task runs once its submission commits
def test_a_page_that_shows_a_claim_is_never_stored(client, open_sample_incident):
    from django.core import mail

    client.post(
        f"/claims/new/{open_sample_incident.slug}/",
        {"user_id": "100056", "email": "trader100056@example.com", "kind": "other", "description": "x"},
    )
    link = re.search(r"http://\S+(/claims/verify/\S+/)", mail.outbox[-1].body).group(1)

    page = client.get(link, follow=True)

    assert page.status_code == 200 and "no-store" in page["Cache-Control"]


# --- health ---


def test_health_checks_the_database_and_the_cache(client):
    response = client.get("/health/?format=json")

    assert response.status_code == 200
    assert set(response.json().values()) == {"OK"} and len(response.json()) >= 2
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_health_fails_when_the_broker_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    response = client.get("/health/?format=json")

    assert response.status_code == 500
    assert [name for name, result in response.json().items() if result != "OK"] == [
        "Redis(db=0, host='127.0.0.1', port=1)"
    ]


# --- observability ---


def test_every_log_line_of_a_request_names_it_and_the_response_says_which(client, caplog):
    import logging

    from config.observability import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/api/no-such-thing/", HTTP_X_REQUEST_ID="edge-42")
        other = client.get("/api/no-such-thing/", HTTP_X_REQUEST_ID="bad id\r\nX: 1")

    assert response["X-Request-ID"] == "edge-42"
    assert [record.request_id for record in caplog.records][:1] == ["edge-42"]
    assert re.fullmatch(r"[0-9a-f]{32}", other["X-Request-ID"])  # a malformed one is replaced


def test_a_task_published_during_a_request_carries_its_id_to_the_worker():
    from types import SimpleNamespace

    from config.observability import request_id, task_ended, task_published, task_started

    outside = request_id.get()
    token = request_id.set("req-7")
    headers = {}
    task_published(headers=headers)
    request_id.reset(token)
    task = SimpleNamespace(request=SimpleNamespace(request_id=headers["request_id"]))

    task_started(task=task)
    inside = request_id.get()
    task_ended(task=task)

    assert (headers, inside, request_id.get()) == ({"request_id": "req-7"}, "req-7", outside)


def test_logs_are_json_lines_in_production():
    code_ = (
        "import django, logging, sys; django.setup(); logging.getLogger('claims').warning('payout batch %s created', 3)"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "LOG_FORMAT")}
    env.update(SECRET_KEY="x" * 50, DJANGO_SETTINGS_MODULE="config.settings")

    result = subprocess.run([sys.executable, "-c", code_], cwd=ROOT, env=env, capture_output=True, text=True)

    import json

    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "claims", "payout batch 3 created")
    assert "time" in line and "request_id" in line


def test_errors_go_to_sentry_only_when_a_dsn_is_set():
    code_ = "import django, sentry_sdk; django.setup(); print(sentry_sdk.get_client().is_active())"
    env = {key: value for key, value in os.environ.items() if key != "DEBUG"}
    env.update(SECRET_KEY="x" * 50, DJANGO_SETTINGS_MODULE="config.settings")

    off = subprocess.run([sys.executable, "-c", code_], cwd=ROOT, env=env, capture_output=True, text=True)
    on = subprocess.run(
        [sys.executable, "-c", code_],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, "SENTRY_DSN": "https://public@sentry.example/1"},
    )

    assert (off.stdout.strip(), on.stdout.strip()) == ("False", "True"), off.stderr + on.stderr
