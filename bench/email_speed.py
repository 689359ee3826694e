"""E-mail intake speed on PostgreSQL: the inbound webhook, and a backlog imported and parsed by a
real worker.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/email_speed.py

1. Database `claimdesk_email_bench` on the server of DATABASE_URL: created afresh, migrated and
   filled with a simulated incident of --users users (trader<ID>@example.com) whose window
   started two days ago (so its claims are open).
2. Mixed messages made from the corpus (tests/email), round after round of its 52 files in name
   order: in round r each `user1000NN` address becomes an account of the incident (the same one
   for every file of the round, so replies and duplicates keep their originals), every Message-ID
   (and the ids a message answers) gets `.r<r>`, the unknown senders' addresses too, and the
   subject a `[r<r>]` tag (so a message without a Message-ID is byte-identical only to its copy
   of the same round): new claims, replies, duplicates, auto-replies, bounces, forgeries, unknown
   senders and broken messages, as the corpus has them.
3. Webhook: gunicorn (--workers sync workers) on config.wsgi; --clients HTTP/1.1 clients POST
   messages as Mailgun posts raw MIME (`body-mime`, signed, with the webhook secret) to
   /anymail/mailgun/inbound_mime/ for --seconds after a --warmup. Each message is stored and its
   parsing enqueued on Redis (BENCH_BROKER_URL, default redis://127.0.0.1:6379/10, flushed before
   and after); no worker runs, as when a burst arrives faster than workers parse. Figures:
   messages accepted per second (200 responses, each stored: checked), p50/p99. Target: 200/s.
4. Backlog: the messages of step 3 removed (TRUNCATE), --messages messages written to one mbox,
   one Celery worker started (--concurrency processes), then `manage.py import_mailbox` as its own
   process: it stores each message (enqueueing its parsing) and waits until every one has its
   outcome. Figures: wall time of the command (target: under 180 s), the command's resident
   memory sampled through the run (flat: the last and largest samples against the one after the
   first thousand messages), the outcomes, and how much longer the worker took to finish what
   the outcomes started (matching, e-mail).
"""

import argparse
import base64
import hashlib
import hmac
import mailbox
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from argparse import Namespace
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from dburls import database_recreate, database_urls
from intake_speed import (
    HOST,
    CpuMeter,
    Load,
    free_port,
    machine_cpu,
    process_cpu,
    start_gunicorn,
    stop,
    window_start,
)
from workers import worker_start, worker_stop

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "email"
CORPUS = ROOT / "tests" / "email"
BENCH_DB = "claimdesk_email_bench"
AUTHSERV_ID = "mx.claimdesk.example"  # the corpus's own receiving server
SECRET = "bench-user:bench-password"
SIGNING_KEY = "bench-mailgun-signing-key"
USER_ID_START = 100_001  # exchange/simulation.py
WEBHOOK_TARGET, BACKLOG_TARGET = 200.0, 180.0


def manage(*args: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def prepare(options, admin_url: str, env: dict) -> None:
    started = time.perf_counter()
    database_recreate(admin_url, BENCH_DB)
    sim = OUT / "incident"
    shutil.rmtree(sim, ignore_errors=True)
    start = window_start(datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    manage("simulate_incident", str(sim), "--users", str(options.users), "--seed", "9", "--start", start, env=env)
    manage("migrate", "--noinput", env=env)
    manage("import_bundle", str(sim), "--by", "bench", env=env)
    manage("load_incident", str(sim / "incident.json"), "--by", "bench", env=env)
    print(f"prepared {BENCH_DB} ({options.users} users) in {time.perf_counter() - started:.0f}s")


# --- messages ----------------------------------------------------------------------------------

USER_ADDRESS = re.compile(rb"([Uu])ser1000(\d\d)@example\.com")
UNKNOWN_SENDER = re.compile(rb"\b(carla|carla\.new|dana|erik)@othermail\.example")
BRACKETED_ID = re.compile(rb"<([^<>@\s]+)@")
THREAD_HEADER = re.compile(rb"^(Message-ID|In-Reply-To|References):.*(?:\r?\n[ \t].*)*", re.I | re.M)
SUBJECT = re.compile(rb"^Subject: ?", re.I | re.M)
HEADER_END = re.compile(rb"\r?\n\r?\n")


def corpus() -> list[bytes]:
    return [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]


def message_round(raws: list[bytes], r: int, users: int) -> list[bytes]:
    """The corpus once more, as round r (see the module docstring)."""

    def account(match: re.Match) -> bytes:
        user_id = USER_ID_START + (int(match.group(2)) + 97 * r) % users
        return (b"T" if match.group(1) == b"U" else b"t") + f"rader{user_id}@example.com".encode()

    made = []
    for raw in raws:
        end = HEADER_END.search(raw)
        head, body = (raw[: end.start()], raw[end.start() :]) if end else (raw, b"")
        head = THREAD_HEADER.sub(lambda m: BRACKETED_ID.sub(rb"<\1.r%d@" % r, m.group(0)), head)
        head = SUBJECT.sub(lambda m: m.group(0) + b"[r%d] " % r, head, count=1)
        message = USER_ADDRESS.sub(account, head + body)
        made.append(UNKNOWN_SENDER.sub(rb"\1.r%d@othermail.example" % r, message))
    return made


def messages(count: int, users: int) -> list[bytes]:
    raws, made, r = corpus(), [], 0
    while len(made) < count:
        made += message_round(raws, r, users)
        r += 1
    return made[:count]


# --- the webhook -------------------------------------------------------------------------------


def mailgun_request(raw: bytes) -> tuple[str, str, bytes, dict]:
    """A POST as Mailgun's route forward() sends it to a URL ending in `mime`."""
    token, timestamp = secrets.token_hex(25), str(int(time.time()))
    signature = hmac.new(SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    fields = {
        "token": token.encode(),
        "timestamp": timestamp.encode(),
        "signature": signature.encode(),
        "recipient": b"support@claimdesk.example",
        "sender": b"bench@example.com",
        "body-mime": raw,
    }
    boundary = secrets.token_hex(16)
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
            for name, value in fields.items()
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Authorization": "Basic " + base64.b64encode(SECRET.encode()).decode(),
    }
    return "POST", "/anymail/mailgun/inbound_mime/", body, headers


def webhook(options, env: dict, made: list[bytes]) -> None:
    from claims.models import InboundMessage

    server, port = None, free_port()
    lock, position = threading.Lock(), [0]

    def request(rng):
        with lock:
            raw = made[position[0] % len(made)]
            position[0] += 1
        return mailgun_request(raw)

    gunicorn = Namespace(app="config.wsgi", workers=options.workers, worker_class="sync", threads=1)
    try:
        server = start_gunicorn(gunicorn, env, port)
        with CpuMeter(server.pid) as cpu:
            figures = Load(port, options.clients, options.warmup, options.seconds).run(request)
    finally:
        stop(server)
    stored = InboundMessage.objects.count()
    accepted = figures["statuses"].get(200, 0)
    rate = accepted / options.seconds  # only what the webhook stored and answered 200 counts
    print(
        f"webhook (Mailgun raw MIME, gunicorn {options.workers} sync workers, {options.clients} clients, "
        f"{options.seconds:.0f}s): {rate:.0f} messages/s accepted "
        f"(target {WEBHOOK_TARGET:.0f}/s: {rate / WEBHOOK_TARGET:.2f}x); "
        f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms; statuses {figures['statuses']}"
    )
    print(
        f"  {stored} messages stored in all ({figures['all requests']} requests, {accepted} answered 200 inside "
        f"the window); CPU s/message: gunicorn {cpu.used['gunicorn'] / max(figures['requests'], 1) * 1000:.2f} ms, "
        f"postgres {cpu.used['postgres'] / max(figures['requests'], 1) * 1000:.2f} ms, "
        f"load clients {cpu.used['bench'] / max(figures['requests'], 1) * 1000:.2f} ms; other processes used "
        f"{cpu.used['others']:.0f} of the {cpu.capacity:.0f} CPU seconds the machine had"
    )


# --- the backlog -------------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


def backlog(options, env: dict, made: list[bytes], slug: str) -> None:
    from django.db import connection

    from claims.models import Claim, InboundMessage, Notification

    with connection.cursor() as cursor:  # step 3's messages, still waiting for a worker
        cursor.execute("TRUNCATE claims_inboundmessage")
    path = OUT / "backlog.mbox"
    path.unlink(missing_ok=True)
    box = mailbox.mbox(path)
    for raw in made:
        box.add(raw)
    box.flush()
    box.close()
    print(f"backlog: {len(made):,} messages, {path.stat().st_size / 1e6:.1f} MB in one mbox")
    log = open(OUT / "worker.log", "w")  # noqa: SIM115 - the worker writes to it until it is killed
    worker = worker_start("email-bench", env, concurrency=options.concurrency, stderr=log)
    try:
        started = time.perf_counter()
        command = subprocess.Popen(
            [sys.executable, "manage.py", "import_mailbox", str(path), "--incident", slug],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        samples, stored_at = [], None
        cpu = cpu_before = cpu_seconds(worker.pid, command.pid)
        while command.poll() is None:
            stored = InboundMessage.objects.count()
            if stored >= len(made) and stored_at is None:
                stored_at = time.perf_counter() - started
            samples.append((stored, rss_mb(command.pid)))
            cpu = cpu_seconds(worker.pid, command.pid)
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        used = {name: cpu[name] - cpu_before[name] for name in cpu}
        summary = command.stdout.read()
        if command.returncode != 0:
            sys.exit(f"import_mailbox failed:\n{summary}")
        drained = drain(started, options.timeout)
    finally:
        worker_stop(worker, timeout=60)
    outcomes = Counter(InboundMessage.objects.values_list("outcome", flat=True))
    memory = [(stored, rss) for stored, rss in samples if rss is not None]
    after_1000 = next((rss for stored, rss in memory if stored >= 1000), None)
    print(
        f"backlog imported and parsed by one worker ({options.concurrency} processes): {elapsed:.1f}s "
        f"(target {BACKLOG_TARGET:.0f}s: {BACKLOG_TARGET / elapsed:.2f}x), {len(made) / elapsed:.0f} messages/s; "
        f"all stored after {stored_at or elapsed:.1f}s"
    )
    print(
        "  CPU seconds while it ran: "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in used.items())
        + f" (the machine's {os.cpu_count()} cores had {elapsed * os.cpu_count():.0f})"
    )
    if memory:
        print(
            f"  import_mailbox resident memory: {after_1000 or memory[0][1]:.0f} MB after the first 1,000 messages, "
            f"{max(rss for _, rss in memory):.0f} MB at most, {memory[-1][1]:.0f} MB at the end "
            f"({len(memory)} samples)"
        )
    print("  outcomes: " + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items(), key=lambda i: str(i[0]))))
    print(
        f"  claims {Claim.objects.count():,} ({Claim.objects.filter(status='received').count()} still received); "
        f"e-mail {Notification.objects.count():,}; the worker finished what the outcomes started "
        f"{drained - elapsed:.1f}s after the command"
        if drained
        else "  the worker had not finished by --timeout"
    )


def cpu_seconds(worker_pid: int, command_pid: int) -> dict[str, float]:
    """CPU seconds so far of the worker (its pool too), the import command, PostgreSQL and the whole
    machine (the rest is what else runs on it)."""
    used = {"worker": 0.0, "import_mailbox": 0.0, "postgres": 0.0}
    for pid, (name, parent, seconds) in process_cpu().items():
        if pid == worker_pid or parent == worker_pid:
            used["worker"] += seconds
        elif pid == command_pid:
            used["import_mailbox"] += seconds
        elif name == "postgres":
            used["postgres"] += seconds
    used["machine"] = machine_cpu()[0]
    return used


def drain(started: float, timeout: float) -> float | None:
    """Seconds from `started` until no claim waits for matching and no e-mail for sending."""
    from claims.models import Claim, Notification

    while time.perf_counter() - started < timeout:
        if not (
            Claim.objects.filter(status="received").exists() or Notification.objects.filter(status="pending").exists()
        ):
            return time.perf_counter() - started
        time.sleep(0.5)
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    # One more than the cores, as the README advises: with 2 on 2 cores the cores idle while the
    # tasks wait for PostgreSQL (186.5 s for the backlog, the machine 88% busy; 3: 158.7 s, 97%).
    parser.add_argument("--concurrency", type=int, default=3, help="the Celery worker's processes")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--only", choices=["webhook", "backlog"], default=None, help="run one of the two parts")
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (any database; the bench creates its own)")
    OUT.mkdir(parents=True, exist_ok=True)
    admin_url, bench_url = database_urls(os.environ["DATABASE_URL"], BENCH_DB)
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/10")
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "DB_CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": broker,
        "ALLOWED_HOSTS": HOST,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench"),
        "LOG_LEVEL": "WARNING",
        "INBOUND_AUTHSERV_ID": AUTHSERV_ID,
        "SUPPORT_EMAIL": "support@claimdesk.example",
        "ANYMAIL_WEBHOOK_SECRET": SECRET,
        "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "MEDIA_ROOT": str(OUT / "media"),
        "SECURE_SSL_REDIRECT": "0",
    }  # the load speaks plain HTTP to gunicorn on loopback
    prepare(options, admin_url, {**env, "CELERY_BROKER_URL": ""})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis

    from claims.models import Incident

    queue = redis.Redis.from_url(broker)
    queue.flushdb()
    made = messages(options.messages, options.users)
    try:
        if options.only != "backlog":
            webhook(options, env, made)
            queue.flushdb()
        if options.only != "webhook":
            backlog(options, env, made, Incident.objects.get().slug)
    finally:
        queue.flushdb()


if __name__ == "__main__":
    main()
