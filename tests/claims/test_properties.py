"""Properties of the detectors that must hold for any ledger, and for the sample bundle in any line order."""

import csv
import gzip
import json
import re
from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from claims import detectors as d

from .ledger_rows import (
    DECIMALS,
    EVALUATION_END,
    MARKETS,
    MS,
    TRADING_RESUMED,
    WINDOW_END,
    WINDOW_START,
    at,
    balance,
    deposit,
    entry,
    fill,
    position,
    withdrawal,
)

# --- generated ledgers ---

PERP_MARKETS = {"BTC_USDC_PERP": d.Market("BTC_USDC_PERP", "BTC", "USDC", "PERP")}
ALL_MARKETS = MARKETS | PERP_MARKETS
PERPS = sorted(symbol for symbol, market in ALL_MARKETS.items() if market.market_type == "PERP")
ASSETS = ("USDC", "SOL", "BTC")
SYSTEM_ORDER_TYPES = (
    None,
    None,
    None,  # the user's own fills, as often as all the system fills together
    "LiquidatePositionOnBook",
    "LiquidatePositionOnBackstop",
    "LiquidatePositionOnAdl",
    "CollateralConversion",
    "FutureExpiry",
    "OrderBookClosed",
)

KEY_INSTANTS = (
    WINDOW_START - timedelta(hours=24),
    WINDOW_START,
    at("11:00"),
    TRADING_RESUMED,
    at("13:30"),
    WINDOW_END,
    EVALUATION_END,
)
EARLIEST = WINDOW_START - timedelta(hours=26)
LATEST = EVALUATION_END + timedelta(hours=2)
SPAN_MS = (LATEST - EARLIEST) // MS


def decimals_between(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=Decimal(low), max_value=Decimal(high), places=places, allow_nan=False, allow_infinity=False
    )


# Instants on the policy's boundaries (and a millisecond either side), near them, or anywhere around the window.
instants = st.one_of(
    st.sampled_from([t + k * MS for t in KEY_INSTANTS for k in (-1, 0, 1)]),
    st.builds(lambda t, ms: t + ms * MS, st.sampled_from(KEY_INSTANTS), st.integers(-600_000, 600_000)),
    st.builds(lambda ms: EARLIEST + ms * MS, st.integers(0, SPAN_MS)),
)
# Levels around 100 hit both sides of a 50 bps tolerance (and its exact edge); the rest is anything positive.
PRICE_LEVELS = tuple(Decimal(p) for p in ("99.4", "99.5", "99.6", "100", "100.4", "100.5", "100.6"))
LOWEST_PRICE = Decimal("0.0001")
prices = st.one_of(st.sampled_from(PRICE_LEVELS), decimals_between(str(LOWEST_PRICE), "200000", 4))
quantities = decimals_between("0.000000001", "100000", 9)
signed_quantities = st.one_of(
    st.sampled_from([Decimal(0), Decimal(1), Decimal(-1), Decimal(10)]), decimals_between("-100000", "100000", 9)
)

fills = st.builds(
    fill,
    trade_id=st.integers(1, 12),
    side=st.sampled_from(["Bid", "Ask"]),
    price=prices,
    quantity=quantities,
    fee=decimals_between("-50", "50", 6),  # negative: a maker rebate
    fee_symbol=st.sampled_from(ASSETS),
    symbol=st.sampled_from(sorted(ALL_MARKETS)),
    timestamp=instants,
    system_order_type=st.sampled_from(SYSTEM_ORDER_TYPES),
)
withdrawals = st.builds(
    withdrawal,
    id=st.integers(1, 8),
    symbol=st.sampled_from(ASSETS),
    quantity=quantities,
    fee=decimals_between("0", "5", 6),
    created_at=instants,
    status=st.sampled_from(["pending", "confirmed", "failed", "cancelled", "returned"]),
)
deposits = st.builds(
    deposit,
    id=st.integers(1, 8),
    symbol=st.sampled_from(ASSETS),
    quantity=quantities,
    source=st.sampled_from(["internal", "internal", "blockchain"]),
    status=st.sampled_from(["confirmed", "confirmed", "pending", "failed"]),
    created_at=instants,
    withdrawal_id=st.none() | st.integers(1, 10),
)
positions = st.builds(position, net_quantity=signed_quantities, snapshot_at=instants, symbol=st.sampled_from(PERPS))
balances = st.builds(balance, total=signed_quantities, snapshot_at=instants, symbol=st.sampled_from([*ASSETS, "USDT"]))
entries = st.builds(
    entry,
    quantity=signed_quantities,
    timestamp=instants,
    symbol=st.sampled_from([*ASSETS, "USDT"]),
    id=st.integers(1, 10_000),
)

ledgers = st.builds(
    d.UserLedger,
    user_id=st.just(7),
    fills=st.lists(fills, max_size=8, unique_by=lambda f: (f.trade_id, f.side)),
    withdrawals=st.lists(withdrawals, max_size=4, unique_by=lambda w: w.id),
    deposits=st.lists(deposits, max_size=4, unique_by=lambda x: x.id),
    journal=st.lists(entries, max_size=8, unique_by=lambda e: e.id),
    balance_snapshots=st.lists(balances, max_size=6, unique_by=lambda s: (s.symbol, s.snapshot_at)),
    position_snapshots=st.lists(positions, max_size=6, unique_by=lambda s: (s.symbol, s.snapshot_at)),
)


# --- generated price series ---


@cache
def grid_times(step: int) -> tuple[datetime, ...]:
    return tuple(EARLIEST + timedelta(seconds=step * i) for i in range((LATEST - EARLIEST) // timedelta(seconds=step)))


def grid_series(step: int, base: tuple, drift: Decimal, moves: list[tuple], gaps: list[tuple]) -> list[tuple]:
    """A row every `step` seconds from EARLIEST to LATEST, except in the gaps (start, seconds): the price of the
    latest move (or `base`), plus `drift` a row (never below 0.0001)."""
    rows, moves = [], sorted(moves, key=lambda move: move[0])
    mark, index = base
    for i, t in enumerate(grid_times(step)):
        while moves and moves[0][0] <= t:
            _, mark, index = moves.pop(0)
        if not any(start <= t < start + timedelta(seconds=length) for start, length in gaps):
            rows.append((t, max(LOWEST_PRICE, mark + drift * i), max(LOWEST_PRICE, index + drift * i)))
    return rows


# A market's (timestamp, mark, index) rows in time order: a regular series with gaps, a few scattered rows (most
# instants then fall in a gap), or none at all.
grids = st.builds(
    grid_series,
    step=st.sampled_from([60, 60, 300, 301, 900]),
    base=st.tuples(prices, prices),
    drift=decimals_between("-0.01", "0.01", 4),
    moves=st.lists(st.tuples(instants, prices, prices), max_size=4),
    gaps=st.lists(st.tuples(instants, st.integers(1, 4 * 3600)), max_size=3),
)
price_series = st.one_of(
    grids,
    grids,
    st.lists(st.tuples(instants, prices, prices), max_size=12, unique_by=lambda row: row[0]).map(sorted),
    st.just([]),
)


@st.composite
def contexts(draw) -> d.Context:
    policy = d.Policy(
        WINDOW_START,
        TRADING_RESUMED,
        WINDOW_END,
        EVALUATION_END,
        price_reference=draw(st.sampled_from(["index", "mark"])),
        price_max_age=draw(st.sampled_from([0, 60, 300, 300, 3600])),
        bad_fill_tolerance_bps=draw(st.integers(0, 500)),
    )
    series = draw(st.fixed_dictionaries({symbol: price_series for symbol in ALL_MARKETS}))
    prices_ = d.Prices(series, reference=policy.price_reference, max_age=policy.price_max_age)
    return d.Context(policy, prices_, ALL_MARKETS, DECIMALS)


def normalized(result: tuple[list[d.Detected], list[d.DetectedFinding]]) -> tuple[list, list]:
    detected, findings = result
    return (
        [
            (x.kind, x.reference, x.asset, None if x.amount is None else str(x.amount), x.review_reason, x.inputs)
            for x in detected
        ],
        [(f.kind, f.reference, f.asset, str(f.quantity), f.description, f.inputs) for f in findings],
    )


# --- 1. amounts ---


@settings(max_examples=300, deadline=None)
@given(ledger=ledgers, ctx=contexts())
def test_every_amount_is_non_negative_and_quantized_to_its_assets_decimals(ledger, ctx):
    detected, _ = d.detect_all(ledger, ctx)

    with_amount = [x for x in detected if x.amount is not None]
    assert [x for x in with_amount if x.amount < 0] == []
    unit = {asset: Decimal(1).scaleb(-decimals) for asset, decimals in DECIMALS.items()}
    assert [x for x in with_amount if x.amount != x.amount.quantize(unit[x.asset])] == []
    assert [x for x in with_amount if x.amount.as_tuple().exponent != -DECIMALS[x.asset]] == []


# --- 2. determinism ---


@settings(max_examples=150, deadline=None)
@given(ledger=ledgers, ctx=contexts())
def test_detecting_the_same_ledger_twice_gives_identical_results(ledger, ctx):
    first = normalized(d.detect_all(ledger, ctx))

    second = normalized(d.detect_all(ledger, ctx))

    assert second == first


# --- 3. the sample bundle, in any line order ---

JULY3 = Path(__file__).parent.parent / "fixtures" / "july3"
BUNDLE = JULY3 / "bundle"
DECIMAL_KEYS = {"price", "quantity", "fee", "total", "netQuantity", "entryPrice", "markPrice", "indexPrice"}
INSTANT_KEYS = {"timestamp", "createdAt", "snapshotAt"}
OPTIONAL_KEYS = {  # absent means null, as in the database
    "accounts": ("displayName", "locale"),
    "fills": ("clientId", "systemOrderType"),
    "withdrawals": ("transactionHash",),
    "deposits": ("transactionHash", "withdrawalId"),
    "ledger": ("reference",),
}


def snake_case(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()  # userId -> user_id, systemOrderType -> system_order_type


def instant(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def row_from_json(data: dict, name: str) -> SimpleNamespace:
    values = {snake_case(key): None for key in OPTIONAL_KEYS.get(name, ())}
    for key, value in data.items():
        if key in DECIMAL_KEYS:
            value = Decimal(str(value))
        elif key in INSTANT_KEYS:
            value = instant(value)
        values[snake_case(key)] = value
    return SimpleNamespace(**values)


@cache
def sample_files() -> dict[str, tuple[SimpleNamespace, ...]]:
    """Every file of the sample bundle as rows, in file order (read once: mark_prices has 22k lines)."""
    files = {}
    for path in sorted(BUNDLE.iterdir()):
        name = path.name.removesuffix(".gz").removesuffix(".jsonl")
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        files[name] = tuple(
            row_from_json(json.loads(line, parse_float=Decimal), name) for line in text.splitlines() if line.strip()
        )
    return files


@cache
def incident() -> dict:
    return json.loads((JULY3 / "incident.json").read_text())


def bundle_context(files: dict) -> d.Context:
    """As claims.services.detection_context builds it: prices between a day before the window and the horizon
    in memory, any other instant answered by a lookup over the whole series (the database's role)."""
    settings_ = incident()
    policy = d.Policy(
        instant(settings_["window_start"]),
        instant(settings_["trading_resumed"]),
        instant(settings_["window_end"]),
        instant(settings_["evaluation_end"]),
        settings_["price_reference"],
        settings_["price_max_age"],
        settings_["bad_fill_tolerance_bps"],
    )
    history = defaultdict(list)
    for row in sorted(files["mark_prices"], key=lambda r: (r.symbol, r.timestamp)):  # the query's ORDER BY
        history[row.symbol].append((row.timestamp, row.mark_price, row.index_price))
    times = {symbol: [row[0] for row in rows] for symbol, rows in history.items()}
    start = policy.window_start - timedelta(hours=24, seconds=policy.price_max_age)
    end = max(policy.evaluation_end, policy.window_end)
    loaded = {symbol: [row for row in rows if start <= row[0] <= end] for symbol, rows in history.items()}

    def latest(symbol: str, t: datetime) -> tuple | None:
        i = bisect_right(times.get(symbol, []), t) - 1
        return history[symbol][i] if i >= 0 else None

    prices_ = d.Prices(
        loaded,
        reference=policy.price_reference,
        max_age=policy.price_max_age,
        loaded_from=start,
        loaded_until=end,
        fetch_before=latest,
    )
    markets = {m.symbol: d.Market(m.symbol, m.base_symbol, m.quote_symbol, m.market_type) for m in files["markets"]}
    return d.Context(policy, prices_, markets, {a.symbol: a.decimals for a in files["assets"]})


LEDGER_FILES = {
    "fills": "fills",
    "withdrawals": "withdrawals",
    "deposits": "deposits",
    "journal": "ledger",
    "balance_snapshots": "balance_snapshots",
    "position_snapshots": "position_snapshots",
}


def detect_bundle(files: dict) -> tuple[list[tuple], set[tuple]]:
    """(owed items as (userId, kind, reference, asset, amount as the detector wrote it), needs-review items) of
    every account, owed items sorted as the export sorts them.

    The rows reach the detectors in file order, unsorted, so a shuffle is a shuffle of the detectors' input."""
    ctx = bundle_context(files)
    by_user = {kind: defaultdict(list) for kind in LEDGER_FILES}
    for kind, name in LEDGER_FILES.items():
        for row in files.get(name, ()):
            by_user[kind][row.user_id].append(row)
    owed, review = [], set()
    for account in files["accounts"]:
        user_ledger = d.UserLedger(account.user_id, **{kind: rows[account.user_id] for kind, rows in by_user.items()})
        detected, _ = d.detect_all(user_ledger, ctx)
        owed += [
            (account.user_id, x.kind, x.reference, x.asset, f"{x.amount:f}")
            for x in detected
            if x.amount is not None and x.amount > 0
        ]
        review |= {
            (account.user_id, x.kind, x.reference, x.asset, x.review_reason) for x in detected if x.amount is None
        }
    return sorted(owed), review


@cache
def unshuffled_result() -> tuple[list[tuple], set[tuple]]:
    return detect_bundle(sample_files())


def test_the_sample_bundle_gives_exactly_the_expected_items_and_reviews():
    slug = incident()["slug"]
    with open(JULY3 / "expected_items.csv", newline="") as f:
        expected = list(csv.reader(f))
    expected_review = set((JULY3 / "expected_review.txt").read_text().splitlines())

    owed, review = unshuffled_result()

    rows = [
        [slug, str(user_id), kind, reference, asset, amount]  # owed is in the export's order already
        for user_id, kind, reference, asset, amount in owed
    ]
    assert [expected[0], *rows] == expected
    assert expected[0] == ["incident", "userId", "kind", "reference", "asset", "amount"]
    assert {f"{user_id} {reference}" for user_id, _, reference, _, _ in review} == expected_review


@settings(max_examples=30, deadline=None)
@given(rng=st.randoms(use_true_random=True))  # a seeded Random: 22k draws per shuffle are too many to shrink
def test_shuffling_the_lines_of_every_bundle_file_changes_no_owed_item_and_no_review(rng):
    shuffled = {name: rng.sample(rows, len(rows)) for name, rows in sample_files().items()}

    result = detect_bundle(shuffled)

    assert result == unshuffled_result()
