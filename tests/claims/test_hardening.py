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
    data = {"user_id": "100056", "email": ON_FILE, "kind": "liquidation", "trade_id": "982069",
            "description": "I was liquidated"}
    data.update(changes)
    return data


# --- 1. account probing through the web form ---


@pytest.mark.parametrize("email", [ON_FILE, "someone.else@example.com"])
def test_a_refused_attachment_is_refused_alike_whether_or_not_the_account_matches(client, incident, email):
    response = client.post(f"/claims/new/{SLUG}/", form_data(
        email=email, attachments=SimpleUploadedFile("x.gif", b"GIF89a" + b"\x00" * 32)))

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
            response = client.post(f"/claims/new/{SLUG}/", form_data(
                email=email, attachments=SimpleUploadedFile("shot.png", PNG)))
        answers.append((response.status_code, response.get("Location"), len(queries),
                        [q["sql"].split()[0] for q in queries.captured_queries]))

    assert answers[0] == answers[1]
    assert answers[0][:2] == (302, "/claims/sent/")
    assert len(enqueued) == 2


def test_the_task_files_the_claim_for_a_matching_pair_only_and_keeps_nothing_of_the_other(client, incident):
    client.post(f"/claims/new/{SLUG}/", form_data(attachments=SimpleUploadedFile("shot.png", PNG)))
    client.post(f"/claims/new/{SLUG}/", form_data(email="someone.else@example.com", description="probe",
                                                  attachments=SimpleUploadedFile("probe.png", PNG)))

    claim = Claim.objects.get()
    assert (claim.user_id, claim.status, claim.description) == (100056, "unverified", "I was liquidated")
    assert [a.original_name for a in claim.attachments.all()] == ["shot.png"]
    assert [m.to for m in mail.outbox] == [[ON_FILE]]
    from claims.models import ClaimSubmission

    kept = list(ClaimSubmission.objects.values_list("status", "data"))
    assert sorted(status for status, _ in kept) == ["discarded", "filed"]
    assert all(data == {} for _, data in kept)  # nothing typed is kept once the submission is handled
