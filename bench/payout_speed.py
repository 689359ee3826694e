"""Money out at scale: approving 100,000 items, paying them in one batch, verifying 1,000,000 audit records.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/payout_speed.py

1. Database `claimdesk_payout_bench` on the server of DATABASE_URL, created afresh and migrated; a
   small simulated ledger (for assets and accounts) and its incident; then --items one-approval
   items (100.01 to 10,000 USDC, one user each) and --claims claims matched to some of them,
   inserted directly. Tasks go to BENCH_BROKER_URL (default redis://127.0.0.1:6379/11, flushed
   before and after) with no worker, as in production where the web tier only publishes.
2. `manage.py approve_items SLUG --by approver` (target: under 60 s), then
   `manage.py payout_batch SLUG --by finance --output DIR` (target: under 60 s), each timed as a
   whole process.
3. The audit trail filled up to --records records (those the steps wrote, plus synthetic ones),
   then `manage.py verify_audit` twice: the first seals what is new and verifies, the second
   only verifies (target: under 60 s).
4. The admin's item list and a claim page, rendered with 10 and with 200 rows: the number of
   queries must not grow with the rows shown.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from dburls import database_recreate, database_urls

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "payout"
BENCH_DB = "claimdesk_payout_bench"
SLUG = "payout-bench"
TARGET = 60.0


def manage(*args: str, env: dict, check: bool = True) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if check and result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return elapsed, result.stdout + result.stderr


def prepare(options, admin_url: str, bench_url: str, env: dict) -> None:
    started = time.perf_counter()
    database_recreate(admin_url, BENCH_DB)
    ledger = OUT / "ledger"
    if not (ledger / "incident.json").exists():
        manage("simulate_incident", str(ledger), "--users", "50", "--seed", "3", env=env)
    manage("migrate", "--noinput", env=env)
    manage("import_bundle", str(ledger), "--by", "bench", env=env)
    _incident_file(ledger)
    manage("load_incident", str(OUT / "incident.json"), "--by", "bench", env=env)
    manage("demo_staff", env=env)
    with psycopg.connect(bench_url, autocommit=True) as conn:
        _fill(conn, options.items, options.claims)
    print(
        f"prepared {BENCH_DB} ({options.items:,} items, {options.claims:,} claims) "
        f"in {time.perf_counter() - started:.0f}s"
    )


def _incident_file(ledger: Path) -> None:
    data = json.loads((ledger / "incident.json").read_text())
    data.update(slug=SLUG, claims_close="2099-01-01T00:00:00Z")
    (OUT / "incident.json").write_text(json.dumps(data))


FILL_SQL = """
INSERT INTO claims_item (incident_id, user_id, kind, reference, asset, amount, status, approval, version, amount_set_by,
    review_reason, formula, inputs, usdc_value, corrective_action, flag_reason, created_at, updated_at)
SELECT i.id, 1000000 + n, 'bad_fill', 'fill:' || n || ':Bid', 'USDC', a.amount, 'computed', 'one', 1, '', '',
    'bad_fill: (Pf - price) * q * dir', '{}', round(a.amount, 2), '', '', now(), now()
FROM claims_incident i, generate_series(1, %(items)s) AS n,
    LATERAL (SELECT round((100.01 + (n * 7919 %% 990000) / 100.0)::numeric, 6) AS amount) a
WHERE i.slug = %(slug)s;
INSERT INTO claims_claim (public_id, incident_id, user_id, channel, kind, description, order_id, transaction_hash,
    market_symbol, claimed_asset, language, status, staff_note, candidate_events, no_loss_details, created_at,
    updated_at)
SELECT gen_random_uuid(), it.incident_id, it.user_id, 'api', 'bad_fill', '', '', '', '', '', 'en', 'matched', '',
    '[]', '[]', now(), now()
FROM claims_item it WHERE it.id IN (SELECT id FROM claims_item ORDER BY id LIMIT %(claims)s);
INSERT INTO claims_claimitem (claim_id, item_id)
SELECT c.id, it.id FROM claims_claim c JOIN claims_item it ON it.user_id = c.user_id AND it.incident_id = c.incident_id;
"""


def _fill(conn, items: int, claims: int) -> None:
    for statement in filter(str.strip, FILL_SQL.split(";")):
        conn.execute(statement, {"items": items, "claims": claims, "slug": SLUG})
    conn.execute("ANALYZE")


def audit_fill(bench_url: str, records: int) -> int:
    """Synthetic records up to `records` in all (through the column default, as writers do)."""
    with psycopg.connect(bench_url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM claims_auditrecord").fetchone()[0]
        missing = max(0, records - have)
        conn.execute(
            """
            INSERT INTO claims_auditrecord (at, actor, object_type, object_id, action, before, after, reason)
            SELECT now(), 'bench', 'item', n, 'approved', '{"status": "computed"}'::jsonb,
                   jsonb_build_object('status', 'approved', 'version', 1, 'amount', (n %% 1000)::text || '.5'),
                   'synthetic record ' || n
            FROM generate_series(1, %s) AS n""",
            [missing],
        )
        return have


def queries(env: dict) -> str:
    code = """
import django, os
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.contrib.auth import get_user_model
from claims.models import Claim, ClaimItem, Item
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(get_user_model().objects.get(username="support"))
claim = Claim.objects.order_by("id").first()
def count(url):
    client.get(url)
    with CaptureQueriesContext(connection) as q:
        assert client.get(url).status_code == 200
    return len(q)
out = []
for rows in (10, 200):
    items = count(f"/admin/claims/item/?all=&o=1")
    page = count(f"/admin/claims/claim/{claim.id}/change/")
    out.append((rows, items, page))
    extra = Item.objects.exclude(claims=claim).order_by("id")[:200 - ClaimItem.objects.filter(claim=claim).count()]
    ClaimItem.objects.bulk_create([ClaimItem(claim=claim, item=i) for i in extra])
print(out)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    return result.stdout.strip() or result.stderr[-2000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--reuse-db", action="store_true", help="keep the database of a previous run")
    options = parser.parse_args()
    admin_url, bench_url = database_urls(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), BENCH_DB
    )
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11")
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "CELERY_BROKER_URL": broker,
        "SECRET_KEY": "bench",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "LOG_LEVEL": "WARNING",
        "SECURE_SSL_REDIRECT": "0",
        "STAFF_2FA": "0",
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    subprocess.run(["redis-cli", "-u", broker, "FLUSHDB"], capture_output=True)
    OUT.mkdir(parents=True, exist_ok=True)
    if not options.reuse_db:
        prepare(options, admin_url, bench_url, env)

    results = []
    seconds, output = manage("approve_items", SLUG, "--by", "approver", env=env)
    results.append(("approve_items", seconds, output.strip().splitlines()[0]))
    seconds, output = manage(
        "payout_batch", SLUG, "--by", "finance", "--output", str(OUT / "files"), env=env, check=False
    )
    results.append(("payout_batch", seconds, output.strip().splitlines()[-1] if output.strip() else ""))
    had = audit_fill(bench_url, options.records)
    seconds, output = manage("verify_audit", env=env)
    results.append((f"verify_audit, sealing {options.records - had:,}+ new records first", seconds, output.strip()))
    seconds, output = manage("verify_audit", env=env)
    results.append(("verify_audit, all sealed", seconds, output.strip()))
    subprocess.run(["redis-cli", "-u", broker, "FLUSHDB"], capture_output=True)

    print(f"\n{'step':<58} {'seconds':>8}  target 60 s  output")
    for name, seconds, output in results:
        verdict = "met" if seconds < TARGET else "MISSED"
        print(f"{name:<58} {seconds:>8.1f}  {verdict:<11}  {output}")
    print(f"\nqueries (rows shown, item list, claim page): {queries(env)}")


if __name__ == "__main__":
    main()
