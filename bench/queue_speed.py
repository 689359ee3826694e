"""The staff workspace at the scale of a bad day: 100,000 items and 20,000 claims.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/queue_speed.py

1. Database `claimdesk_queue_bench` on the server of DATABASE_URL, created afresh and migrated; a
   small simulated ledger (assets, accounts) and its incident; then, inserted directly, --claims
   accounts with five items each (--items in all: one- and two-approval, some approved, some
   needing review, some flagged, created over two weeks, each claim's first item with an approval),
   one claim per account linked to its items, and an audit record for every item.
2. Each page rendered --repeat times by Django's test client for the `support` login, after a
   warm-up; its median and 95th percentile, against the targets: the queue's first page, a filtered
   page, a search and the case page under 300 ms at p95, the dashboard under 500 ms. Nothing is
   cached: every aggregate is computed by the database on each request.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from dburls import database_recreate, database_urls

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "queue"
BENCH_DB = "claimdesk_queue_bench"
SLUG = "queue-bench"
TARGETS = {"page": 0.300, "dashboard": 0.500}


def manage(*args: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def prepare(options, admin_url: str, bench_url: str, env: dict) -> None:
    import json

    started = time.perf_counter()
    database_recreate(admin_url, BENCH_DB)
    ledger = OUT / "ledger"
    if not (ledger / "incident.json").exists():
        manage("simulate_incident", str(ledger), "--users", "50", "--seed", "3", env=env)
    manage("migrate", "--noinput", env=env)
    manage("import_bundle", str(ledger), "--by", "bench", env=env)
    data = json.loads((ledger / "incident.json").read_text())
    data.update(slug=SLUG, claims_close="2099-01-01T00:00:00Z")
    (OUT / "incident.json").write_text(json.dumps(data))
    manage("load_incident", str(OUT / "incident.json"), "--by", "bench", env=env)
    manage("demo_staff", env=env)
    with psycopg.connect(bench_url, autocommit=True) as conn:
        for statement in filter(str.strip, FILL_SQL.split(";")):
            conn.execute(statement, {"items": options.items, "claims": options.claims, "slug": SLUG})
        conn.execute("ANALYZE")
    print(
        f"prepared {BENCH_DB} ({options.items:,} items, {options.claims:,} claims) "
        f"in {time.perf_counter() - started:.0f}s"
    )


# Accounts 2000000 + u (u < claims), each with items n where n % claims = u.
FILL_SQL = """
INSERT INTO exchange_account (user_id, email, created_at, display_name, locale, import_run_id)
SELECT 2000000 + u, 'bench' || u || '@example.com', now() - interval '300 days', NULL,
    (ARRAY['en-US', 'zh-CN', 'pt-BR'])[1 + u %% 3], (SELECT max(id) FROM exchange_importrun)
FROM generate_series(0, %(claims)s - 1) AS u;
INSERT INTO claims_item (incident_id, user_id, kind, reference, asset, amount, status, approval, version, amount_set_by,
    review_reason, formula, inputs, usdc_value, corrective_action, flag_reason, flagged_at, flagged_amount,
    created_at, updated_at)
SELECT i.id, 2000000 + n %% %(claims)s, (ARRAY['bad_fill', 'liquidation', 'wrong_withdrawal'])[1 + n %% 3],
    'fill:' || n || ':Bid', 'USDC',
    CASE WHEN n %% 50 = 7 THEN NULL ELSE a.amount END,
    CASE WHEN n %% 50 = 7 THEN 'needs_review' WHEN n %% 4 = 1 THEN 'approved' ELSE 'computed' END,
    CASE WHEN n %% 50 = 7 OR a.amount > 10000 THEN 'two' ELSE 'one' END, 1, '', '', 'bad_fill', '{}',
    round(a.amount, 2), '', CASE WHEN n %% 97 = 3 THEN 'recomputed' ELSE '' END,
    CASE WHEN n %% 97 = 3 THEN now() END, CASE WHEN n %% 97 = 3 THEN a.amount + 1 END,
    now() - (n %% 1209600) * interval '1 second', now()
FROM claims_incident i, generate_series(1, %(items)s) AS n,
    LATERAL (SELECT round((100.01 + (n * 7919 %% 1990000) / 100.0)::numeric, 6) AS amount) a
WHERE i.slug = %(slug)s;
INSERT INTO claims_claim (public_id, incident_id, user_id, channel, kind, description, order_id, transaction_hash,
    market_symbol, claimed_amount, claimed_asset, language, status, staff_note, candidate_events, no_loss_details,
    created_at, updated_at)
SELECT gen_random_uuid(), i.id, 2000000 + u, (ARRAY['web', 'api', 'email'])[1 + u %% 3], 'bad_fill',
    'my fill ' || u, '', '', '', 150 + u %% 900, 'USDC', (ARRAY['en', 'zh-hans', 'pt-br'])[1 + u %% 3],
    (ARRAY['matched', 'unmatched', 'in_review', 'approved'])[1 + u %% 4], '', '[]', '[]',
    now() - (u * 60) * interval '1 second', now()
FROM claims_incident i, generate_series(0, %(claims)s - 1) AS u WHERE i.slug = %(slug)s;
INSERT INTO claims_claimitem (claim_id, item_id)
SELECT c.id, it.id FROM claims_claim c JOIN claims_item it ON it.user_id = c.user_id AND it.incident_id = c.incident_id;
INSERT INTO claims_itemapproval (item_id, version, approver_id, approver_name, is_approver_role, slot, at)
SELECT min(it.id), 1, (SELECT id FROM auth_user WHERE username = 'support'), 'support', false, 1, now()
FROM claims_item it WHERE it.status = 'computed' GROUP BY it.user_id;
INSERT INTO claims_auditrecord (at, actor, object_type, object_id, action, before, after, reason)
SELECT it.created_at, 'detection', 'item', it.id, 'detected', NULL, jsonb_build_object('status', it.status), 'bench'
FROM claims_item it
"""

MEASURE = """
import statistics, sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from claims.models import Claim, Incident
incident = Incident.objects.get(slug=sys.argv[1])
repeat = int(sys.argv[2])
user_id = Claim.objects.filter(incident=incident).order_by("id").values_list("user_id", flat=True)[500]
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(get_user_model().objects.get(username="support"))
pages = [
    ("page", "queue: items, first page", "/admin/claims/item/"),
    ("page", "queue: items, filtered", f"/admin/claims/item/?incident__id__exact={incident.pk}"
     "&status__exact=computed&approval__exact=two&mine=approve&age=old3"),
    ("page", "queue: claims, first page", "/admin/claims/claim/"),
    ("page", "queue: claims, filtered", f"/admin/claims/claim/?incident__id__exact={incident.pk}"
     "&status__exact=unmatched&channel__exact=web&value=10k"),
    ("page", "queue: items, search by e-mail", f"/admin/claims/item/?q=bench{user_id - 2000000}@example.com"),
    ("page", "case page (5 items, 1 claim)", f"/admin/claims/claim/case/{incident.pk}/{user_id}/"),
    ("dashboard", "dashboard", f"/admin/?incident={incident.slug}"),
]
for target, name, url in pages:
    for _ in range(3):
        assert client.get(url).status_code == 200, url
    queries = []
    with connection.execute_wrapper(lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)):
        client.get(url)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    times.sort()
    p95 = times[max(int(round(0.95 * len(times))) - 1, 0)]
    print(f"{target}\\t{name}\\t{statistics.median(times):.4f}\\t{p95:.4f}\\t{len(queries)}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--reuse-db", action="store_true", help="keep the database of a previous run")
    options = parser.parse_args()
    admin_url, bench_url = database_urls(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), BENCH_DB
    )
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "SECRET_KEY": "bench",
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CELERY_BROKER_URL": "",
        "SECURE_SSL_REDIRECT": "0",  # the test client speaks plain HTTP
    }
    OUT.mkdir(parents=True, exist_ok=True)
    if not options.reuse_db:
        prepare(options, admin_url, bench_url, env)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, SLUG, str(options.repeat)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    print(f"\n{'page':<36} {'median ms':>9} {'p95 ms':>7} {'queries':>7}  target")
    for line in result.stdout.strip().splitlines():
        target, name, median, p95, queries = line.split("\t")
        verdict = "met" if float(p95) < TARGETS[target] else "MISSED"
        print(
            f"{name:<36} {float(median) * 1000:>9.0f} {float(p95) * 1000:>7.0f} {queries:>7}  "
            f"{TARGETS[target] * 1000:.0f} ms p95 {verdict}"
        )
    print(f"\n({options.items:,} items, {options.claims:,} claims, {options.repeat} requests a page; nothing cached)")


if __name__ == "__main__":
    main()
