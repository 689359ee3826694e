"""Matching speed: claims received at once, matched by one Celery worker with two processes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/match_speed.py

1. Database `claimdesk_match_bench` on the server of DATABASE_URL: created afresh, migrated and
   filled with a simulated incident of --users users whose window started two days ago (so its
   claims are open).
2. --claims claims filed through the API's service (claim_file), one per user drawn at random,
   of a random kind, with nothing enqueued yet; then every matching task enqueued at once on
   BENCH_BROKER_URL (default redis://127.0.0.1:6379/11, flushed before and after).
3. One worker (prefork, 2 processes; e-mail to Django's dummy backend) drains the queue: each task
   merges or acknowledges its claim, runs detection for the claimant and links the items; the
   acknowledgement and the outcome are two more tasks each. Wall time from the worker's start
   until no claim is `received`, claims/s, and the outcomes.

There is no target: matching runs after the claim is answered, and workers scale out; this
shows how long a burst of claims waits for its outcome on this machine.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dburls import database_recreate, database_urls
from workers import worker_start, worker_stop

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BENCH_DB = "claimdesk_match_bench"
KINDS = ["liquidation", "bad_fill", "wrong_withdrawal", "position_error", "missing_funds", "other"]


def manage(*args: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def prepare(options, admin_url: str, env: dict) -> None:
    started = time.perf_counter()
    database_recreate(admin_url, BENCH_DB)
    out = OUT / "match"
    shutil.rmtree(out, ignore_errors=True)
    start = (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    manage("simulate_incident", str(out), "--users", str(options.users), "--seed", "5", "--start", start, env=env)
    manage("migrate", "--noinput", env=env)
    manage("import_bundle", str(out), "--by", "bench", env=env)
    manage("load_incident", str(out / "incident.json"), "--by", "bench", env=env)
    print(f"prepared {BENCH_DB} ({options.users} users) in {time.perf_counter() - started:.0f}s")


def file_claims(count: int) -> list[int]:
    """Claims received at once, their matching not yet enqueued."""
    from unittest import mock

    from claims import services, tasks
    from claims.models import Incident
    from exchange.selectors import account_ids

    slug = Incident.objects.get().slug
    users = account_ids()
    rng = random.Random(7)
    with mock.patch.object(tasks.claim_match_task, "delay"):
        return [
            services.claim_file(
                incident_slug=slug,
                user_id=user_id,
                channel="api",
                kind=rng.choice(KINDS),
                description="bench",
                actor="bench",
            ).id
            for user_id in rng.sample(users, count)
        ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=600)
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (any database; the bench creates its own)")
    if options.claims > options.users:
        sys.exit("--claims must not exceed --users (one claim per user)")
    admin_url, bench_url = database_urls(os.environ["DATABASE_URL"], BENCH_DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11")
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "CELERY_BROKER_URL": broker,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench"),
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    }
    prepare(options, admin_url, {**env, "CELERY_BROKER_URL": ""})
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis

    from claims.models import Claim
    from claims.tasks import claim_match_task

    queue = redis.Redis.from_url(broker)
    queue.flushdb()
    claim_ids = file_claims(options.claims)
    for claim_id in claim_ids:
        claim_match_task.delay(claim_id=claim_id)
    worker = None
    try:
        started = time.perf_counter()
        worker = worker_start("match-bench", env, stderr=subprocess.DEVNULL)
        waiting = Claim.objects.filter(id__in=claim_ids, status=Claim.Status.RECEIVED)
        while waiting.exists() and time.perf_counter() - started < options.timeout:
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
    finally:
        if worker is not None:
            worker_stop(worker)
        queue.flushdb()
    left = waiting.count()
    outcomes = Counter(Claim.objects.filter(id__in=claim_ids).values_list("status", flat=True))
    print(f"users {options.users:,}; {len(claim_ids):,} claims matched by one worker with 2 processes")
    print(
        f"matched in {elapsed:.1f}s (from the worker's start): {(len(claim_ids) - left) / elapsed:.0f} claims/s"
        + (f"; {left} still received after --timeout" if left else "")
    )
    print("outcomes: " + ", ".join(f"{status} {count}" for status, count in sorted(outcomes.items())))


if __name__ == "__main__":
    main()
