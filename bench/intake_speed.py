"""Claim intake speed: POST /api/claims/ through gunicorn on PostgreSQL, against a bare Django view.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/intake_speed.py

1. Database `claimdesk_intake_bench` on the server of DATABASE_URL: created afresh, migrated and
   filled with a simulated incident of --users users whose window started two days ago (so its
   claims are open), and one API client with the `claims` scope.
2. Queries per claim: one POST through Django's test client in this process, counted with
   CaptureQueriesContext, for two users and payloads of different size (and a user's second claim);
   the process's first POST also looks its API client up (kept API_CLIENT_CACHE_SECONDS).
3. gunicorn on 127.0.0.1 (a free port) with config.wsgi; each claim enqueues its matching task
   (which acknowledges it) to Redis (BENCH_BROKER_URL, default redis://127.0.0.1:6379/13, flushed
   before and after; no worker runs), the cache (throttles) is Redis too (BENCH_CACHE_URL,
   default redis://127.0.0.1:6379/12, flushed before).
4. Baseline: --clients HTTP/1.1 clients (threads) GET /healthz (a bare view: no database) for --seconds
   after a --warmup; then the same clients POST claims for random users for as long.
   Throughput counts 201 responses; p50/p99 are the latencies of every request in the window.
   CPU per request: CPU seconds of gunicorn (master and workers), of PostgreSQL's processes and of
   the load clients over the phase, from /proc, divided by the requests answered; the rest of the
   machine is shown as "other processes" (a busy neighbour spoils the figures).
5. --profile: in this process, cProfile of --profile-requests POSTs; the top functions by
   cumulative and by own time.
   --app serves another WSGI module (e.g. config.wsgi with an experiment patched in) instead of
   config.wsgi; the in-process query counts import it too.
"""

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from dburls import database_recreate, database_urls

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BENCH_DB = "claimdesk_intake_bench"
TOKEN = "intake-bench-token-not-a-secret"
HOST = "127.0.0.1"
KINDS = ["liquidation", "bad_fill", "wrong_withdrawal", "position_error", "missing_funds", "other"]
MAX_REQUESTS_PER_CLIENT = 100_000  # with the deadline, bounds every client loop


def manage(*args: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def window_start(now: datetime) -> datetime:
    """Two days before now on a whole minute: the simulated window is over, its claims still open."""
    return (now.astimezone(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)


def prepare(options, admin_url: str, env: dict) -> None:
    started = time.perf_counter()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if options.reuse_db and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            print(f"reusing {BENCH_DB}")
            return
    database_recreate(admin_url, BENCH_DB)
    out = OUT / "intake"
    shutil.rmtree(out, ignore_errors=True)
    start = window_start(datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    manage("simulate_incident", str(out), "--users", str(options.users), "--seed", "3", "--start", start, env=env)
    manage("migrate", "--noinput", env=env)
    manage("import_bundle", str(out), "--by", "bench", env=env)
    manage("load_incident", str(out / "incident.json"), "--by", "bench", env=env)
    print(f"prepared {BENCH_DB} (window start {start}, {options.users} users) in {time.perf_counter() - started:.0f}s")


def django_setup(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def api_client_create() -> None:
    from claims.api_auth import token_digest
    from claims.models import ApiClient

    ApiClient.objects.update_or_create(
        name="intake bench", defaults={"token_hash": token_digest(TOKEN), "scopes": ["claims"], "is_active": True}
    )


def claim_body(rng: random.Random, slug: str, large: bool = False) -> dict:
    kind = rng.choice(KINDS)
    body = {
        "incident": slug,
        "kind": kind,
        "trade_id": rng.randrange(1, 2**62),
        "description": "My position was liquidated while the exchange was down.",
    }
    if large:
        body.update(
            description="x" * 4000,
            order_id=f"order-{rng.randrange(10**9)}",
            market_symbol="BTC-PERP",
            claimed_amount="1234.5678",
            claimed_asset="USDC",
            approximate_time="2025-07-03T10:30:00Z",
            transaction_hash="0x" + "ab" * 32,
            language="pt-br",
        )
    return body


def queries_per_claim(slug: str, users: list[int]) -> list[tuple[str, int, int]]:
    """(case, queries, status) for POSTs through the test client, as gunicorn would run them."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(SERVER_NAME=HOST)
    rng = random.Random()  # fresh trade ids: a repeated one would take the (longer) merge path
    headers = {"HTTP_AUTHORIZATION": f"Token {TOKEN}"}
    # The process looks its API client up once (API_CLIENT_CACHE_SECONDS): the first POST makes one query more.
    cases = [
        ("first POST of the process", users[3], False),
        ("user A, small payload", users[0], False),
        ("user B, large payload", users[1], True),
        ("user A again, 2nd claim", users[0], False),
        ("user C, small payload", users[2], False),
    ]
    results = []
    for label, user_id, large in cases:
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                "/api/claims/",
                json.dumps(claim_body(rng, slug, large)),
                content_type="application/json",
                HTTP_X_CLAIMDESK_USER=str(user_id),
                **headers,
            )
        results.append((label, len(queries.captured_queries), response.status_code))
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_gunicorn(options, env: dict, port: int) -> subprocess.Popen:
    args = [
        str(Path(sys.executable).parent / "gunicorn"),
        options.app,
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(options.workers),
        "--worker-class",
        options.worker_class,
        "--keep-alive",
        "30",
        "--backlog",
        "256",
        "--log-level",
        "warning",
    ]
    if options.worker_class == "gthread":
        args += ["--threads", str(options.threads)]
    log = open(OUT / "intake-gunicorn.log", "w")  # its errors, if any; the child keeps the file open
    process = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log.name}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 30 s")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu() -> dict[int, tuple[str, int, float]]:
    """Every process's (name, parent pid, CPU seconds so far), from /proc."""
    result = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            result[int(entry.name)] = (name, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return result


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent by gunicorn, PostgreSQL, this process and the rest of the machine."""

    def __init__(self, master_pid: int):
        self.master = master_pid

    def __enter__(self):
        self.before, self.machine_before = self._split(), machine_cpu()
        return self

    def __exit__(self, *exc):
        after, (busy, total) = self._split(), machine_cpu()
        self.used = {k: after[k] - self.before[k] for k in after}
        self.used["machine"] = busy - self.machine_before[0]
        self.used["others"] = self.used["machine"] - self.used["gunicorn"] - self.used["postgres"] - self.used["bench"]
        self.capacity = total - self.machine_before[1]  # CPU seconds all cores had

    def _split(self) -> dict[str, float]:
        split = {"gunicorn": 0.0, "postgres": 0.0, "bench": 0.0}
        for pid, (name, parent, seconds) in process_cpu().items():
            if pid == self.master or parent == self.master:
                split["gunicorn"] += seconds
            elif name == "postgres":
                split["postgres"] += seconds
            elif pid == os.getpid():
                split["bench"] += seconds
        return split


class HttpConnection:
    """A minimal HTTP/1.1 client for the load: it shares the machine with the server it measures,
    and http.client (which parses every response's headers with the e-mail package) cost the
    machine about twice as much CPU a request. Keeps the connection when the server does."""

    def __init__(self, port: int):
        self.port, self.sock, self.pending = port, None, b""

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> int:
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=30)
            self.pending = b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + (body or b""))
        while b"\r\n\r\n" not in self.pending:
            self._receive()
        header, _, rest = self.pending.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {
            name.strip().lower(): value.strip().lower()
            for name, _, value in (line.partition(b":") for line in lines[1:])
        }
        self.pending = rest
        if b"content-length" not in fields:  # the body ends when the server closes the connection
            while self._receive(allow_close=True):
                pass
            self.close()
            return status
        length = int(fields[b"content-length"])
        while len(self.pending) < length:
            self._receive()
        self.pending = self.pending[length:]
        if fields.get(b"connection") == b"close":
            self.close()
        return status

    def _receive(self, allow_close: bool = False) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk and not allow_close:
            raise ConnectionError("the server closed the connection mid-response")
        self.pending += chunk
        return bool(chunk)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Load:
    """--clients threads, each with its own HTTP/1.1 connection, for warmup + seconds.

    A connection is kept alive where the server allows it (gthread); sync workers close each one,
    and the client opens the next.
    """

    def __init__(self, port: int, clients: int, warmup: float, seconds: float):
        self.port, self.clients, self.warmup, self.seconds = port, clients, warmup, seconds
        self.samples: list[tuple[float, float, int]] = []  # (sent at, latency s, status; 0 = no response)
        self.lock = threading.Lock()

    def run(self, request) -> dict:
        self.started = time.perf_counter()
        self.window = (self.started + self.warmup, self.started + self.warmup + self.seconds)
        threads = [threading.Thread(target=self._client, args=(request, n), daemon=True) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=self.warmup + self.seconds + 60)
        return self._figures()

    def _client(self, request, n: int) -> None:
        rng = random.Random()  # not seeded: a rerun on the same database must not repeat its claims (merges)
        conn = HttpConnection(self.port)
        samples = []
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            sent = time.perf_counter()
            if sent >= self.window[1]:
                break
            method, path, body, headers = request(rng)
            try:
                status = conn.request(method, path, body, headers)
            except (OSError, ValueError, IndexError):
                status = 0
                conn.close()
            samples.append((sent, time.perf_counter() - sent, status))
        conn.close()
        with self.lock:
            self.samples += samples

    def _figures(self) -> dict:
        start, end = self.window
        inside = [s for s in self.samples if start <= s[0] and s[0] + s[1] <= end]
        latencies = sorted(s[1] * 1000 for s in inside)
        statuses: dict[int, int] = {}
        for _, _, status in inside:
            statuses[status] = statuses.get(status, 0) + 1
        return {
            "requests": len(inside),
            "all requests": len(self.samples),
            "statuses": statuses,
            "rate": len(inside) / self.seconds,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else float("nan"),
        }


def profile_posts(slug: str, users: list[int], count: int) -> str:
    """cProfile POSTs in this process; the top functions by cumulative and by own time."""
    from django.test import Client

    client = Client(SERVER_NAME=HOST)
    rng = random.Random()
    profiler = cProfile.Profile()
    for _ in range(count):
        body = json.dumps(claim_body(rng, slug))
        profiler.enable()
        client.post(
            "/api/claims/",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {TOKEN}",
            HTTP_X_CLAIMDESK_USER=str(rng.choice(users)),
        )
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(15)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    # Measured on 2 cores: 3 and 4 sync workers give the same throughput (within the machine's own
    # variation), 2 less; gthread (3x2, 3x11, 4x8) keeps connections open but gives a p99 over 300 ms.
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="per worker, with --worker-class gthread")
    parser.add_argument("--app", default="config.wsgi", help="the WSGI app for gunicorn (experiments)")
    parser.add_argument("--reuse-db", action="store_true", help="keep an existing bench database (tuning runs)")
    parser.add_argument("--profile", action="store_true", help="also profile POSTs in this process")
    parser.add_argument("--profile-requests", type=int, default=200)
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (any database; the bench creates its own)")
    OUT.mkdir(parents=True, exist_ok=True)
    admin_url, bench_url = database_urls(os.environ["DATABASE_URL"], BENCH_DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
    cache_url = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/12")
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "DB_CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": broker,
        "CACHE_URL": cache_url,
        "API_THROTTLE_CLAIMANT": "1000/min",
        "ALLOWED_HOSTS": HOST,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench"),
        "LOG_LEVEL": "WARNING",
        "SECURE_SSL_REDIRECT": "0",
    }  # the load speaks plain HTTP to gunicorn on loopback
    prepare(options, admin_url, {**env, "CELERY_BROKER_URL": "", "CACHE_URL": ""})
    # SIGTERM (e.g. a CI timeout) unwinds through the finally below, which stops gunicorn.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    django_setup(env)
    import importlib

    import redis

    importlib.import_module(options.app.split(":")[0])  # the app under test, for the in-process figures too

    from claims.models import Claim, Incident
    from exchange.selectors import account_ids

    broker_db, cache_db = redis.Redis.from_url(broker), redis.Redis.from_url(cache_url)
    broker_db.flushdb()
    cache_db.flushdb()
    api_client_create()
    slug = Incident.objects.get().slug
    users = account_ids()
    server = None
    try:
        counts = queries_per_claim(slug, users)
        port = free_port()
        server = start_gunicorn(options, env, port)
        claims_before = Claim.objects.count()

        def bare(rng):
            return "GET", bare_path, None, {}

        def post_claim(rng):
            body = json.dumps(claim_body(rng, slug)).encode()
            return (
                "POST",
                "/api/claims/",
                body,
                {
                    "Authorization": f"Token {TOKEN}",
                    "X-Claimdesk-User": str(rng.choice(users)),
                    "Content-Type": "application/json",
                },
            )

        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        conn.request("GET", "/healthz")
        bare_path = "/healthz" if conn.getresponse().status != 404 else "/api/"
        conn.close()
        with CpuMeter(server.pid) as baseline_cpu:
            baseline = Load(port, options.clients, options.warmup, options.seconds).run(bare)
        with CpuMeter(server.pid) as intake_cpu:
            intake = Load(port, options.clients, options.warmup, options.seconds).run(post_claim)
        claims_stored = Claim.objects.count() - claims_before
        queued = broker_db.llen("celery")
    finally:
        stop(server)
        broker_db.flushdb()

    print(
        f"gunicorn {options.app}: {options.workers} {options.worker_class} workers"
        + (f" x {options.threads} threads" if options.worker_class == "gthread" else "")
        + f"; {options.clients} clients, {options.seconds:.0f} s after {options.warmup:.0f} s warm-up; "
        f"{len(users):,} users"
    )
    for label, queries, status in counts:
        print(f"queries per POST, {label + ':':28s} {queries:3d}   (response {status})")
    equal = len({queries for _, queries, _ in counts[1:]}) == 1
    print(f"queries per POST constant:   {'yes' if equal else 'NO'} (after the first)")
    print(
        f"baseline GET {bare_path:9s}       {baseline['rate']:8.0f} req/s     p50 {baseline['p50']:6.1f} ms"
        f"   p99 {baseline['p99']:6.1f} ms   statuses {baseline['statuses']}"
    )
    created = intake["statuses"].get(201, 0)
    rate = created / options.seconds
    other = {k: v for k, v in intake["statuses"].items() if k != 201}
    print(
        f"POST /api/claims/:           {rate:8.0f} claims/s    p50 {intake['p50']:6.1f} ms"
        f"   p99 {intake['p99']:6.1f} ms   (target >= 300 claims/s, p99 < 150 ms)"
    )
    print(f"non-201 responses:           {sum(other.values())} {other or ''}")
    print(f"claims stored / tasks queued: {claims_stored:,} / {queued:,}")
    print(f"ratio claims / baseline:     {rate / baseline['rate']:8.2f}")
    for label, figures, meter in (("baseline", baseline, baseline_cpu), ("claims", intake, intake_cpu)):
        requests, used = figures["all requests"], meter.used  # CPU is measured over the warm-up too
        print(
            f"CPU per request, {label + ':':10s}  gunicorn {used['gunicorn'] / requests * 1000:5.2f} ms   postgres "
            f"{used['postgres'] / requests * 1000:5.2f} ms   load clients {used['bench'] / requests * 1000:5.2f} ms"
            f"   (machine {used['machine'] / meter.capacity * 100:3.0f}% busy, other processes "
            f"{used['others'] / meter.capacity * 100:3.0f}%)"
        )
    if options.profile:
        print(f"\nprofile of {options.profile_requests} POSTs in-process:")
        print(profile_posts(slug, users, options.profile_requests))
        broker_db.flushdb()


if __name__ == "__main__":
    main()
