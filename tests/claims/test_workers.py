"""Detection by real Celery workers over Redis, sharing the test database on PostgreSQL.

CI sets CLAIMDESK_TEST_BROKER_URL; elsewhere these run whenever that and PostgreSQL are there.
"""

import io
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import call_command

from claims.models import DetectionRun, Finding, Incident, Item
from claims.selectors import item_export_rows
from claims.services import detection_chunk_run, detection_chunks_requeue, detection_start

from ..workers import NEEDS_WORKERS, tasks_to_broker, worker_kill, worker_start

USERS = 120
CHUNK = 10

pytestmark = NEEDS_WORKERS


WORKER_LOGS: list[Path] = []


@pytest.fixture
def workers(tmp_path):
    """Start Celery workers on the test database; every one is killed at the end."""
    started = []
    WORKER_LOGS.clear()

    def start(name: str, *, chunk_delay: float = 0, beat: bool = False, env: dict | None = None) -> subprocess.Popen:
        log = tmp_path / f"worker-{name}.log"
        WORKER_LOGS.append(log)
        env = {
            "CELERY_VISIBILITY_TIMEOUT": "3",
            "CELERY_UNACKED_RESTORE_INTERVAL": "1",
            "CELERY_UNACKED_MUTEX_EXPIRE": "2",
            "CLAIMDESK_DETECTION_CHUNK_DELAY": str(chunk_delay),
            **(env or {}),
        }
        with_beat = ("-B", "-s", str(tmp_path / f"beat-{name}")) if beat else ()
        process = worker_start(name, env, log, args=with_beat)
        started.append(process)
        return process

    yield start
    for process in started:
        worker_kill(process)


@pytest.fixture
def broker():
    """Send this test's tasks to Redis, which gives back a lost task after 3 s."""
    with tasks_to_broker(
        broker_transport_options={"visibility_timeout": 3, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    ) as app:
        yield app


@pytest.fixture
def simulated(tmp_path):
    out = tmp_path / "sim"
    call_command(
        "simulate_incident", str(out), users=USERS, seed=11, start="2025-07-03T10:00:00Z", stdout=io.StringIO()
    )
    call_command("import_bundle", str(out), stdout=io.StringIO())
    call_command("load_incident", str(out / "incident.json"), stdout=io.StringIO())
    return Incident.objects.get()


def detect_in_process(incident) -> list[list[str]]:
    with mock.patch("claims.services.engine._enqueue_chunks"):
        run = detection_start(incident=incident, user_ids=None, requested_by="test", chunk_size=CHUNK)
    for chunk_id in run.chunks.values_list("id", flat=True):
        detection_chunk_run(chunk_id=chunk_id)
    rows = item_export_rows(incident=incident)
    Item.objects.all().delete()
    Finding.objects.all().delete()
    return rows


def wait_for(run: DetectionRun, seconds: float, *, until_done_users: int | None = None) -> DetectionRun:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status == "done" or (until_done_users is not None and run.done_users >= until_done_users):
            return run
        time.sleep(0.1)
    logs = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in WORKER_LOGS if log.exists())
    raise AssertionError(f"detection #{run.pk} stuck at {run.done_users}/{run.total_users} users\n{logs}")


def test_workers_detect_the_same_items_as_in_process_detection(simulated, broker, workers):
    expected = detect_in_process(simulated)
    assert len(expected) > 10
    workers("one")
    workers("two")

    run = detection_start(incident=simulated, user_ids=None, requested_by="test", chunk_size=CHUNK)
    wait_for(run, 30)

    assert item_export_rows(incident=simulated) == expected
    assert (run.done_users, run.chunks.filter(status="done").count()) == (USERS, USERS // CHUNK)


def test_a_worker_killed_mid_run_is_replaced_and_the_items_come_out_the_same(simulated, broker, workers):
    expected = detect_in_process(simulated)
    doomed = workers("doomed", chunk_delay=1.5)  # each chunk waits 1.5 s before it commits

    run = detection_start(incident=simulated, user_ids=None, requested_by="test", chunk_size=CHUNK)
    wait_for(run, 60, until_done_users=CHUNK)
    worker_kill(doomed)  # two chunks were mid-way (computed, not committed) and one more was reserved
    run.refresh_from_db()
    assert run.status == "running" and run.done_users < USERS
    workers("replacement")
    try:
        wait_for(run, 60)  # the unacknowledged chunks come back after the visibility timeout (3 s here)
    except AssertionError:
        # Kombu loses the one task a worker killed between taking it from Redis and recording it as
        # unacknowledged; the cron sweep (requeue_tasks) brings that chunk back. More than one lost
        # would mean the visibility timeout brought nothing back.
        assert len(detection_chunks_requeue(older_than=timedelta(0))) == 1
        wait_for(run, 60)

    assert item_export_rows(incident=simulated) == expected
    assert run.done_users == USERS  # nothing counted twice
    assert list(run.chunks.values_list("attempts", flat=True).distinct()) == [1]


def test_chunks_lost_with_a_killed_worker_are_redone_by_the_periodic_sweep_long_before_redelivery(
    simulated, broker, workers
):
    expected = detect_in_process(simulated)
    # Redis would hand the lost chunks back only after ten minutes: here only the sweep can.
    slow_redelivery = {"CELERY_VISIBILITY_TIMEOUT": "600", "REQUEUE_SWEEP_SECONDS": "2", "REQUEUE_AFTER_SECONDS": "3"}
    doomed = workers("doomed", chunk_delay=1.5, env=slow_redelivery)

    run = detection_start(incident=simulated, user_ids=None, requested_by="test", chunk_size=CHUNK)
    wait_for(run, 60, until_done_users=CHUNK)
    worker_kill(doomed)
    run.refresh_from_db()
    assert run.status == "running" and run.done_users < USERS
    killed_at = time.monotonic()
    workers("replacement", beat=True, env=slow_redelivery)

    wait_for(run, 90)

    assert time.monotonic() - killed_at < 120  # within two minutes, nobody watching
    assert item_export_rows(incident=simulated) == expected
    assert run.done_users == USERS  # nothing counted twice
