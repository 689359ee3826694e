import io
import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from exchange.models import Account, Fill, JournalEntry

START = "2025-07-03T10:00:00Z"
USERS = 30
SEED = 97  # its 30 users include every planted pattern (see the first test)


def simulate(outdir: Path, *, users: int = USERS, seed: int = SEED, **options) -> Path:
    call_command("simulate_incident", str(outdir), users=users, seed=seed, start=START, stdout=io.StringIO(), **options)
    return outdir


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line, parse_float=Decimal) for line in stream]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim") / "out")


@pytest.fixture(scope="module")
def bundle(out) -> dict[str, list[dict]]:
    return {path.stem: read_jsonl(path) for path in sorted((out / "bundle").glob("*.jsonl"))}


@pytest.fixture(scope="module")
def snapshot_instants(out) -> tuple[datetime, datetime]:
    incident = json.loads((out / "incident.json").read_text())
    return instant(incident["window_start"]) - timedelta(minutes=1), instant(incident["trading_resumed"])


def injected_users(out: Path) -> set[int]:
    return {line["userId"] for line in read_jsonl(out / "injected.jsonl")}


def snapshot_pairs(rows: list[dict], value_key: str, before_at: datetime, after_at: datetime) -> dict:
    """(userId, symbol) -> (value before, value after), from the two snapshots of each."""
    pairs: dict[tuple, dict] = defaultdict(dict)
    for row in rows:
        pairs[(row["userId"], row["symbol"])][instant(row["snapshotAt"])] = Decimal(row[value_key])
    assert all(set(values) == {before_at, after_at} for values in pairs.values())
    return {key: (values[before_at], values[after_at]) for key, values in pairs.items()}


def test_the_seed_used_here_plants_every_pattern(out):
    planted = {(line["kind"], line["expect"]) for line in read_jsonl(out / "injected.jsonl")}

    assert planted == {
        ("liquidation", "item"),
        ("bad_fill", "item"),
        ("bad_fill", "no_loss"),
        ("bad_fill", "needs_review"),
        ("wrong_withdrawal", "item"),
        ("position_error", "item"),
        ("position_error", "no_loss"),
        ("missing_funds", "item"),
        ("missing_funds", "surplus"),
    }


def test_same_seed_and_arguments_give_identical_files(tmp_path):
    first = simulate(tmp_path / "first")
    second = simulate(tmp_path / "second")

    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert [str(p) for p in files] == sorted(
        ["incident.json", "injected.jsonl"]
        + [
            f"bundle/{name}.jsonl"
            for name in (
                "accounts",
                "assets",
                "markets",
                "fills",
                "withdrawals",
                "deposits",
                "ledger",
                "balance_snapshots",
                "position_snapshots",
                "mark_prices",
            )
        ]
    )
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path


def test_another_seed_gives_other_fills(tmp_path, out):
    other = simulate(tmp_path / "other", seed=SEED + 1)

    assert (other / "bundle" / "fills.jsonl").read_bytes() != (out / "bundle" / "fills.jsonl").read_bytes()


def test_fills_total_is_the_number_asked_for(tmp_path):
    out = simulate(tmp_path / "out", users=7, fills=123)

    assert len(read_jsonl(out / "bundle" / "fills.jsonl")) == 123


def test_unaffected_users_balances_agree_with_their_journal(out, bundle, snapshot_instants):
    before_at, after_at = snapshot_instants
    planted = injected_users(out)
    journal = defaultdict(Decimal)
    for entry in bundle["ledger"]:
        if before_at < instant(entry["timestamp"]) <= after_at:
            journal[(entry["userId"], entry["symbol"])] += Decimal(entry["quantity"])

    pairs = snapshot_pairs(bundle["balance_snapshots"], "total", before_at, after_at)

    checked = [key for key in pairs if key[0] not in planted]
    assert checked and planted
    for key in checked:
        before, after = pairs[key]
        assert after == before + journal[key], key


def test_unaffected_users_positions_agree_with_their_fills(out, bundle, snapshot_instants):
    before_at, after_at = snapshot_instants
    planted = injected_users(out)
    traded = defaultdict(Decimal)
    for fill in bundle["fills"]:
        if before_at < instant(fill["timestamp"]) <= after_at:
            signed = Decimal(fill["quantity"]) if fill["side"] == "Bid" else -Decimal(fill["quantity"])
            traded[(fill["userId"], fill["symbol"])] += signed

    pairs = snapshot_pairs(bundle["position_snapshots"], "netQuantity", before_at, after_at)

    checked = [key for key in pairs if key[0] not in planted]
    assert any(traded[key] for key in checked)  # some of them traded during the incident
    for key in checked:
        before, after = pairs[key]
        assert after == before + traded[key], key


def test_planted_liquidations_and_bad_fills_are_owed_what_the_policy_computes(out, bundle):
    index = {(row["symbol"], row["timestamp"][:16]): Decimal(row["indexPrice"]) for row in bundle["mark_prices"]}
    fills = {f"fill:{f['tradeId']}:{f['side']}": f for f in bundle["fills"]}
    planted = [
        line
        for line in read_jsonl(out / "injected.jsonl")
        if line["kind"] in ("liquidation", "bad_fill") and line["expect"] == "item"
    ]

    assert planted
    for line in planted:
        fill = fills[line["reference"]]
        # every planted fill has a price row in its own minute, so P(symbol, t) is that row
        price_at_fill = index[(fill["symbol"], fill["timestamp"][:16])]
        direction = 1 if fill["side"] == "Ask" else -1
        owed = (price_at_fill - Decimal(fill["price"])) * Decimal(fill["quantity"]) * direction
        if line["kind"] == "liquidation":
            owed = max(owed, Decimal(0)) + max(Decimal(fill["fee"]), Decimal(0))
        assert Decimal(line["amount"]) == owed.quantize(Decimal("0.000001")), line
        assert owed > 0


@pytest.mark.django_db
def test_simulated_bundle_imports(out, bundle):
    call_command("import_bundle", str(out), stdout=io.StringIO())

    assert Account.objects.count() == USERS
    assert Fill.objects.count() == len(bundle["fills"])
    assert JournalEntry.objects.count() == len(bundle["ledger"])
