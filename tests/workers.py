"""Real Celery workers for the tests that need them: subprocesses on the test database, over the
Redis broker that CI gives (CLAIMDESK_TEST_BROKER_URL); elsewhere those tests are skipped."""

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

BROKER = os.environ.get("CLAIMDESK_TEST_BROKER_URL", "")
ROOT = Path(__file__).resolve().parent.parent

NEEDS_WORKERS = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not BROKER or connection.vendor != "postgresql",
        reason="needs PostgreSQL and a Redis broker (CLAIMDESK_TEST_BROKER_URL); .ci/run has both",
    ),
]


def shared_database_url() -> str:
    """The address of the database this test runs on, for the workers to share it."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_start(name: str, env: dict, log: Path, *, concurrency: int = 2, args: tuple = ()) -> subprocess.Popen:
    """`celery -A config worker` named `name@host` on the test database and the broker (env adds
    to or overrides those), in a process group of its own, its warnings written to `log`."""
    env = {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "CELERY_BROKER_URL": BROKER,
        "SECRET_KEY": "test",
        **env,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}@%h",
            *args,
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - the worker writes to it until it is killed
    )


def worker_kill(process: subprocess.Popen) -> None:
    """SIGKILL the worker and its pool: no warm shutdown, nothing acknowledged or given back."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@contextmanager
def tasks_to_broker(**conf):
    """This test's tasks go to Redis instead of running in-process (conf: more Celery settings)."""
    import redis

    from config.celery import app

    redis.Redis.from_url(BROKER).flushdb()
    changed = {"task_always_eager": False, "broker_url": BROKER, **conf}
    saved = {key: app.conf[key] for key in changed}
    app.conf.update(changed)
    # Even an eager task takes a producer from the app's pool, which keeps the broker URL it was
    # made with: drop the pools so they are made again for this broker (and after, for the next).
    app._pool, app.amqp._producer_pool = None, None
    try:
        yield app
    finally:
        app.conf.update(saved)
        app._pool, app.amqp._producer_pool = None, None
