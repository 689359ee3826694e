"""Import speed on PostgreSQL against the physical baseline of COPYing the same fills.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/import_speed.py \
        [--fills 1000000] [--database claimdesk_bench]

1. simulate_incident writes a bundle with --fills fills (users = fills / 10), cached in bench/out/.
2. A fresh database (--database, default `claimdesk_bench`: dropped first, so give each person
   sharing a server a name of their own) is created on the server of DATABASE_URL and migrated.
3. The bundle without fills.jsonl is imported; then the whole bundle, whose only new file is
   fills.jsonl: that second run is the whole import path for the fills (read, parse,
   validate, stage, insert), timed from the command's start to its end.
4. Baseline: the same fills, already as CSV, are COPYed into a table created LIKE the
   fills table (same columns, indexes and unique constraints).
5. The bundle is imported again (the no-op), and once more with --recheck.
Peak memory is the largest resident set of an import process (wait4's ru_maxrss).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from dburls import database_recreate, database_urls

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BENCH_DB = "claimdesk_bench"
FILL_COLUMNS = (
    "user_id, trade_id, side, order_id, symbol, price, quantity, fee, fee_symbol, is_maker, "
    "timestamp, client_id, system_order_type, import_run_id"
)


def run(args: list[str], env: dict) -> tuple[float, int, str]:
    """Run a manage.py command; return wall seconds, peak RSS in MB, and its output."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{output}")
    return seconds, usage.ru_maxrss // 1024, output


def database_name(name: str) -> str:
    if not name.isidentifier():  # it goes into DROP DATABASE unquoted
        raise argparse.ArgumentTypeError(f"{name!r} is not a plain name such as {BENCH_DB}")
    return name


def fresh_database(url: str, name: str) -> str:
    admin_url, bench_url = database_urls(url, name)
    database_recreate(admin_url, name)
    return bench_url


def bundle_for(fills: int, env: dict) -> Path:
    target = OUT / f"fills-{fills}"
    if not (target / "bundle" / "fills.jsonl").exists():
        shutil.rmtree(target, ignore_errors=True)
        seconds, peak, _ = run(
            [
                "simulate_incident",
                str(target),
                "--users",
                str(max(fills // 10, 1)),
                "--fills",
                str(fills),
                "--seed",
                "1",
                "--start",
                "2025-07-03T10:00:00Z",
            ],
            env,
        )
        print(f"simulate_incident: {seconds:.1f}s, peak {peak} MB")
    return target


def baseline_copy(dsn: str, csv_path: Path) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_fill_baseline")
        conn.execute("CREATE TABLE bench_fill_baseline (LIKE exchange_fill INCLUDING ALL)")
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY bench_fill_baseline ({FILL_COLUMNS}) FROM STDIN WITH (FORMAT csv)") as copy,
            open(csv_path, "rb") as source,
        ):
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_fill_baseline")
    return seconds


def export_csv(dsn: str, csv_path: Path) -> int:
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor, open(csv_path, "wb") as target:
        with cursor.copy(f"COPY (SELECT {FILL_COLUMNS} FROM exchange_fill) TO STDOUT WITH (FORMAT csv)") as copy:
            for chunk in copy:
                target.write(chunk)
        return conn.execute("SELECT count(*) FROM exchange_fill").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fills", type=int, default=1_000_000)
    parser.add_argument(
        "--database",
        default=BENCH_DB,
        type=database_name,
        help=f"the database to drop, create and fill (default {BENCH_DB})",
    )
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (any database; the bench creates its own)")
    url = fresh_database(os.environ["DATABASE_URL"], options.database)
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": os.environ.get("SECRET_KEY", "bench")}
    env.pop("CELERY_BROKER_URL", None)
    bundle = bundle_for(options.fills, env)
    run(["migrate", "--noinput", "-v0"], env)

    without_fills = OUT / "without-fills"
    shutil.rmtree(without_fills, ignore_errors=True)
    without_fills.mkdir(parents=True)
    for path in (bundle / "bundle").iterdir():
        if path.name != "fills.jsonl":
            os.link(path, without_fills / path.name)
    others_seconds, _, _ = run(["import_bundle", str(without_fills), "--by", "bench"], env)
    first_seconds, first_peak, first_output = run(["import_bundle", str(bundle), "--by", "bench"], env)
    csv_path = OUT / "fills-baseline.csv"
    fills = export_csv(url, csv_path)
    baseline_seconds = baseline_copy(url, csv_path)
    noop_seconds, noop_peak, noop_output = run(["import_bundle", str(bundle), "--by", "bench"], env)
    recheck_seconds, recheck_peak, _ = run(["import_bundle", str(bundle), "--by", "bench", "--recheck"], env)
    csv_path.unlink()
    shutil.rmtree(without_fills)

    import_rate, baseline_rate = fills / first_seconds, fills / baseline_seconds
    print(first_output.strip())
    print()
    print(f"fills:                         {fills:,}")
    print(f"import of fills (whole path):  {first_seconds:7.2f}s  {import_rate:10,.0f} rows/s  peak {first_peak} MB")
    print(f"baseline COPY of the CSV:      {baseline_seconds:7.2f}s  {baseline_rate:10,.0f} rows/s")
    print(f"ratio import / baseline:       {import_rate / baseline_rate:7.2f}   (target >= 0.5)")
    print(f"other files first import:      {others_seconds:7.2f}s")
    print(
        f"no-op re-import:               {noop_seconds:7.2f}s  {first_seconds / noop_seconds:5.1f}x faster"
        f"  peak {noop_peak} MB   (target >= 3x)"
    )
    print(
        f"no-op re-import --recheck:     {recheck_seconds:7.2f}s  {first_seconds / recheck_seconds:5.1f}x faster"
        f"  peak {recheck_peak} MB"
    )
    print(f"peak memory of any import:     {max(first_peak, noop_peak, recheck_peak)} MB   (target < 300 MB)")


if __name__ == "__main__":
    main()
