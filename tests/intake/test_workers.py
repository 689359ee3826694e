"""The corpus parsed by real Celery workers over Redis, sharing the test database on PostgreSQL:
however the workers take the messages, each gets the outcome the spec gives it in name order
(a reply after the message it answers, a copy after its original).

CI sets CLAIMDESK_TEST_BROKER_URL; elsewhere these run whenever that and PostgreSQL are there.
"""

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from claims.models import InboundMessage

from .conftest import AUTHSERV_ID, SUPPORT_EMAIL, corpus_expected, corpus_folder

BROKER = os.environ.get("CLAIMDESK_TEST_BROKER_URL", "")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not BROKER or connection.vendor != "postgresql",
        reason="needs PostgreSQL and a Redis broker (CLAIMDESK_TEST_BROKER_URL); .ci/run has both",
    ),
]


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def broker():
    """This test's tasks go to Redis instead of running in-process."""
    import redis

    from config.celery import app

    redis.Redis.from_url(BROKER).flushdb()
    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    app.conf.update(task_always_eager=False, broker_url=BROKER)
    app._pool, app.amqp._producer_pool = None, None  # made again for this broker (and after, for the next)
    yield app
    app.conf.update(saved)
    app._pool, app.amqp._producer_pool = None, None


@pytest.fixture
def worker(tmp_path, settings):
    """One worker with four processes on the test database, killed at the end."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": BROKER,
        "SECRET_KEY": "test",
        "INBOUND_AUTHSERV_ID": AUTHSERV_ID,
        "SUPPORT_EMAIL": SUPPORT_EMAIL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--concurrency",
            "4",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            "intake@%h",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "worker.log", "w"),
    )  # noqa: SIM115 - the worker writes to it until it is killed
    yield process
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_workers_give_the_corpus_its_outcomes_whatever_order_they_take_it_in(email_incident, tmp_path, broker, worker):
    want = corpus_expected()

    call_command("import_mailbox", str(corpus_folder(tmp_path / "corpus")), stdout=io.StringIO())

    got = {m.place: (m.outcome, m.user_id) for m in InboundMessage.objects.all()}
    assert got == {name: (sidecar["outcome"], sidecar["userId"]) for name, sidecar in want.items()}
