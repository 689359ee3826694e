"""The corpus parsed by real Celery workers over Redis, sharing the test database on PostgreSQL:
however the workers take the messages, each gets the outcome the spec gives it in name order
(a reply after the message it answers, a copy after its original).

CI sets CLAIMDESK_TEST_BROKER_URL; elsewhere these run whenever that and PostgreSQL are there.
"""

import io

import pytest
from django.core.management import call_command

from claims.models import InboundMessage

from ..workers import NEEDS_WORKERS, tasks_to_broker, worker_kill, worker_start
from .conftest import AUTHSERV_ID, SUPPORT_EMAIL, corpus_expected, corpus_folder

pytestmark = NEEDS_WORKERS


@pytest.fixture
def broker():
    with tasks_to_broker() as app:
        yield app


@pytest.fixture
def worker(tmp_path, settings):
    """One worker with four processes on the test database, killed at the end."""
    env = {
        "INBOUND_AUTHSERV_ID": AUTHSERV_ID,
        "SUPPORT_EMAIL": SUPPORT_EMAIL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    process = worker_start("intake", env, tmp_path / "worker.log", concurrency=4)
    yield process
    worker_kill(process)


def test_workers_give_the_corpus_its_outcomes_whatever_order_they_take_it_in(email_incident, tmp_path, broker, worker):
    want = corpus_expected()

    call_command("import_mailbox", str(corpus_folder(tmp_path / "corpus")), stdout=io.StringIO())

    got = {m.place: (m.outcome, m.user_id) for m in InboundMessage.objects.all()}
    assert got == {name: (sidecar["outcome"], sidecar["userId"]) for name, sidecar in want.items()}
