"""Detection speed on PostgreSQL with two Celery worker processes over Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/detect_speed.py

1. Database `claimdesk_detect_bench` on the server of DATABASE_URL: created, migrated and filled
   with a simulated incident of --users users and --fills fills (bundle cached in bench/out/),
   unless it already holds that incident (--fresh rebuilds it).
2. One Celery worker with two processes (prefork, concurrency 2) on BENCH_BROKER_URL
   (default redis://127.0.0.1:6379/14).
3. Full detection of every user, then of the first 10% of the users: wall time from enqueueing
   to the run's last chunk, users/s, and the ratio of the two (linear cost: at most 11x).
4. Detection for one user, as a new claim triggers it: the service call, in this process,
   for --samples random users: p50 and p95.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from dburls import database_recreate, database_urls
from workers import worker_start, worker_stop

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BENCH_DB = "claimdesk_detect_bench"
START = "2025-07-03T10:00:00Z"


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def prepare(options, admin_url: str, env: dict) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if exists and not options.fresh:
            return
    database_recreate(admin_url, BENCH_DB)
    bundle = OUT / f"fills-{options.fills}"
    if not (bundle / "incident.json").exists():
        manage(
            "simulate_incident",
            str(bundle),
            "--users",
            str(options.users),
            "--fills",
            str(options.fills),
            "--seed",
            "1",
            "--start",
            START,
            env=env,
        )
    started = time.perf_counter()
    manage("migrate", "--noinput", env=env)
    manage("import_bundle", str(bundle), "--by", "bench", env=env)
    manage("load_incident", str(bundle / "incident.json"), "--by", "bench", env=env)
    print(f"prepared {BENCH_DB} in {time.perf_counter() - started:.0f}s")


def start_worker(env: dict) -> subprocess.Popen:
    process = worker_start("bench", env)
    time.sleep(3)  # let it connect before the clock starts
    return process


def timed_run(incident, user_ids, chunk_size: int) -> float:
    """Detection from scratch (no stored items), so both runs do the same work per user."""
    from claims.models import Finding, Item
    from claims.services import detection_start

    Item.objects.filter(incident=incident).delete()
    Finding.objects.filter(incident=incident).delete()
    started = time.perf_counter()
    run = detection_start(incident=incident, user_ids=user_ids, requested_by="bench", chunk_size=chunk_size)
    while True:
        run.refresh_from_db()
        if run.status == "done":
            return time.perf_counter() - started
        time.sleep(0.05)


def one_user_latencies(incident, user_ids: list[int], samples: int) -> list[float]:
    from claims.services import items_detect_and_save

    rng = random.Random(5)
    items_detect_and_save(incident=incident, user_ids=[user_ids[0]], run=None)  # loads the price cache once
    latencies = []
    for user_id in rng.sample(user_ids, samples):
        started = time.perf_counter()
        items_detect_and_save(incident=incident, user_ids=[user_id], run=None)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--fills", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--fresh", action="store_true", help="rebuild the bench database")
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (any database; the bench creates its own)")
    admin_url, bench_url = database_urls(os.environ["DATABASE_URL"], BENCH_DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "CELERY_BROKER_URL": broker,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench"),
    }
    prepare(options, admin_url, {**env, "CELERY_BROKER_URL": ""})
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis

    from claims.models import Incident
    from exchange.selectors import account_ids

    redis.Redis.from_url(broker).flushdb()
    incident = Incident.objects.get()
    users = account_ids()
    worker = start_worker(env)
    try:
        full = timed_run(incident, None, options.chunk_size)
        tenth = users[: len(users) // 10]
        part = timed_run(incident, tenth, options.chunk_size)
    finally:
        worker_stop(worker)
    latencies = one_user_latencies(incident, users, options.samples)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[18]
    print(f"users:                        {len(users):,}  (fills {options.fills:,})")
    print(f"full detection, 2 processes:  {full:7.1f}s  {len(users) / full:8,.0f} users/s   (target < 180 s)")
    print(f"detection of {len(tenth):,} users:     {part:7.1f}s  {len(tenth) / part:8,.0f} users/s")
    print(f"ratio full / tenth:           {full / part:7.1f}    (linear: at most 11)")
    print(f"one user (service call):      p50 {p50:5.1f} ms   p95 {p95:5.1f} ms   (target p95 < 50 ms)")


if __name__ == "__main__":
    main()
