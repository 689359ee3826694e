"""Simulated incidents: an export bundle with planted errors, for tests, demos and benchmarks.

`simulate()` writes, under one output folder:

- `bundle/*.jsonl`: an export bundle in the format of the spec's export-bundle.md;
- `incident.json`: the incident's settings (the keys of the July 3 sample);
- `injected.jsonl`: one line per error planted on purpose, with what a detector
  following compensation-policy.md should make of it (`expect`, `asset`, `amount`).

Users are generated one at a time. Each user's events are planned, sorted by time
and then played against a running state of balances and perp positions: every
balance change is written as a journal entry, and the snapshots are written from
that state. So an unaffected user's snapshots agree exactly with their journal and
fills, and memory stays flat however many users and fills are asked for.

Times are integers: milliseconds since `Timeline.origin`, the first price row.
The same arguments and seed always give byte-identical files (one `random.Random`,
no set iteration, no floats in any amount).
"""

import itertools
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

ZERO = Decimal(0)
ONE = Decimal(1)
MILLION = Decimal(1_000_000)
Q2, Q4, Q6 = Decimal("0.01"), Decimal("0.0001"), Decimal("0.000001")
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

PRICE_MAX_AGE = 300 * SECOND  # the incident's price_max_age, which this module writes
BAD_FILL_TOLERANCE_BPS = 50
USER_ID_START = 100_001

ASSET_DECIMALS = {"USDC": 6, "USDT": 6, "SOL": 9, "BTC": 8, "ETH": 8}
# Deposits, withdrawals and planted balance errors use these steps, far coarser than
# the asset's decimals so that every balance stays well under 15 significant digits.
ASSET_STEP = {"USDC": Q2, "USDT": Q2, "SOL": Q4, "BTC": Decimal("0.00001"), "ETH": Q4}
WITHDRAWAL_FEE = {"USDC": ONE, "USDT": ONE, "SOL": Decimal("0.01"), "BTC": Decimal("0.00005"), "ETH": Decimal("0.0005")}
BLOCKCHAIN = {"USDC": "Solana", "USDT": "Ethereum", "SOL": "Solana", "BTC": "Bitcoin", "ETH": "Ethereum"}
LOCALES = ("en-US", "zh-CN", "pt-BR")

# Index prices are a random walk per base asset; perps share their spot market's index.
INDEX_START = {"SOL": Decimal("150"), "BTC": Decimal("105000"), "ETH": Decimal("2500"), "USDT": ONE}
WALK_STEP_PPM = 800  # per minute; about 1.7% a day
USDT_NOISE_PPM = 300  # USDT is not a walk: it stays within 0.03% of 1


@dataclass(frozen=True)
class MarketSpec:
    symbol: str
    base: str
    is_perp: bool
    tick: Decimal  # prices are quantized to this
    lot: Decimal  # quantities are quantized to this


MARKETS = (
    MarketSpec("SOL_USDC", "SOL", False, Q2, Decimal("0.001")),
    MarketSpec("BTC_USDC", "BTC", False, Decimal("0.1"), Q4),
    MarketSpec("ETH_USDC", "ETH", False, Q2, Decimal("0.001")),
    # USDT needs 4 places: a 0.01 tick would be a 1% price error on a price of 1.
    MarketSpec("USDT_USDC", "USDT", False, Q4, Q2),
    MarketSpec("SOL_USDC_PERP", "SOL", True, Q2, Decimal("0.001")),
    MarketSpec("BTC_USDC_PERP", "BTC", True, Decimal("0.1"), Q4),
    MarketSpec("ETH_USDC_PERP", "ETH", True, Q2, Decimal("0.001")),
)
MARKETS_BY_SYMBOL = {m.symbol: m for m in MARKETS}
PERPS = tuple(m for m in MARKETS if m.is_perp)

# One market has no price rows for a few minutes inside the window, after trading
# resumed, so that a few events have no price (the policy sends them to review).
GAP_MARKET = "ETH_USDC_PERP"
GAP_FIRST_MINUTE = 3 * 60 + 1  # minutes after window_start: rows 13:01..13:11 are missing
GAP_LAST_MINUTE = 3 * 60 + 11

# Planted errors: share of users with any, and the relative weight of each pattern.
ERROR_RATE_PERCENT = 17
TWO_ERRORS_PERCENT = 30
ERROR_WEIGHTS = {
    "liquidation": 20,
    "bad_fill": 20,
    "wrong_withdrawal": 20,
    "position_error": 15,
    "holdings_gone": 15,
    "margin_jump": 10,
}
FILL_SLOTS = {"liquidation": 2, "bad_fill": 1, "position_error": 1, "favourable_fill": 1, "no_price_fill": 1}
MARGIN_USER_PERCENT = 8  # ordinary users with a negative USDT balance (a margin borrow)

LIQUIDATION_TYPES = ("LiquidatePositionOnBook", "LiquidatePositionOnBackstop", "LiquidatePositionOnAdl")
# How a planted failed withdrawal came back: in another asset or short in its own, by a
# deposit with or without the withdrawalId link; or not at all.
WRONG_WITHDRAWAL_VARIANTS = ("linked_other", "unlinked_other", "linked_short", "unlinked_short", "not_returned")

FILES = (
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


def text(value: Decimal) -> str:
    """A decimal as plain text, never in exponent form ("1E-7") and never "-0"."""
    if value == 0:
        value = abs(value)
    return format(value, "f")


def quantize_down(value: Decimal, step: Decimal) -> Decimal:
    return value.quantize(step, rounding=ROUND_DOWN)


def ppm(parts: int) -> Decimal:
    return Decimal(parts) / MILLION


# --- the policy's formulas, for the amounts written to injected.jsonl ---


def fill_direction(side: str) -> int:
    return 1 if side == "Ask" else -1


def fill_slippage(*, reference_price: Decimal, price: Decimal, quantity: Decimal, side: str) -> Decimal:
    """`(Pf - price) * q * dir`: what a fill lost against the reference price."""
    return (reference_price - price) * quantity * fill_direction(side)


def liquidation_owed(
    *, reference_price: Decimal, price: Decimal, quantity: Decimal, side: str, fee: Decimal
) -> Decimal:
    slippage = fill_slippage(reference_price=reference_price, price=price, quantity=quantity, side=side)
    return max(ZERO, slippage) + max(ZERO, fee)


def position_error_owed(*, delta: Decimal, price_at_error: Decimal, price_at_end: Decimal) -> Decimal:
    return max(ZERO, -delta * (price_at_end - price_at_error))


def wrong_withdrawal_owed(
    *, quantity: Decimal, fee: Decimal, returned_in_usdc: Decimal, withdrawn_unit_in_usdc: Decimal
) -> Decimal:
    """`W.quantity + W.fee - D.quantity * V(D.symbol) / V(W.symbol)`, for one return credit."""
    return max(ZERO, quantity + fee - returned_in_usdc / withdrawn_unit_in_usdc)


def to_asset(amount: Decimal, asset: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-ASSET_DECIMALS[asset]), rounding=ROUND_HALF_UP)


# --- time ---


class Timeline:
    """The incident's instants, as milliseconds since the first price row (one day before the window)."""

    def __init__(self, window_start: datetime):
        self.window_start = window_start
        self.origin = window_start - timedelta(days=1)
        self.start = DAY
        self.resumed = self.start + 2 * HOUR + 10 * MINUTE
        self.end = self.start + 6 * HOUR
        self.evaluation_end = self.start + 26 * HOUR
        self.before = self.start - MINUTE  # the snapshots: just before the window, and at resumption
        self.after = self.resumed
        self.last_minute = (self.evaluation_end + DAY) // MINUTE
        self.activity_first = self.start - 22 * HOUR
        self.activity_last = self.evaluation_end + 22 * HOUR

    def stamp(self, t: int) -> str:
        return (self.origin + timedelta(milliseconds=t)).isoformat(timespec="milliseconds")

    def at(self, t: int) -> datetime:
        return self.origin + timedelta(milliseconds=t)

    def funding_times(self) -> list[int]:
        """Every 00:00, 08:00 and 16:00 UTC while users trade."""
        midnight = self.at(self.activity_first).replace(hour=0, minute=0, second=0, microsecond=0)
        first = (midnight - self.origin) // timedelta(milliseconds=1)
        return [t for t in range(first, self.activity_last, 8 * HOUR) if t >= self.activity_first]

    def incident(self) -> dict:
        def iso(t: datetime) -> str:
            return t.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "slug": f"sim-{self.window_start:%Y-%m-%d}",
            "title": f"Simulated maintenance {self.window_start:%Y-%m-%d}",
            "window_start": iso(self.window_start),
            "trading_resumed": iso(self.at(self.resumed)),
            "window_end": iso(self.at(self.end)),
            "evaluation_end": iso(self.at(self.evaluation_end)),
            "price_reference": "index",
            "price_max_age": PRICE_MAX_AGE // SECOND,
            "bad_fill_tolerance_bps": BAD_FILL_TOLERANCE_BPS,
            "auto_approve_limit": "100",
            "dual_approval_limit": "10000",
            "claims_close": iso(self.window_start + timedelta(days=60)),
        }


def default_window_start(now: datetime) -> datetime:
    """Four days before now at 10:00 UTC, so that the incident's claims are still open."""
    day = (now.astimezone(UTC) - timedelta(days=4)).replace(tzinfo=None)
    return day.replace(hour=10, minute=0, second=0, microsecond=0)


# --- prices ---


class PriceBook:
    """One index price per minute and base asset, and the policy's `P(symbol, t)` over them."""

    def __init__(self, rng: random.Random, timeline: Timeline):
        self.timeline = timeline
        count = timeline.last_minute + 1
        self.index = {base: self._walk(rng, start, count) for base, start in INDEX_START.items()}
        self.premium = {m.symbol: [rng.randint(-400, 400) for _ in range(count)] for m in PERPS}
        self.funding_ppm = {(m.symbol, t): rng.randint(-100, 100) for t in timeline.funding_times() for m in PERPS}
        self.gap_first = (timeline.start // MINUTE) + GAP_FIRST_MINUTE
        self.gap_last = (timeline.start // MINUTE) + GAP_LAST_MINUTE
        # Inside this open interval GAP_MARKET's latest row is older than PRICE_MAX_AGE.
        self.no_price_from = (self.gap_first - 1) * MINUTE + PRICE_MAX_AGE
        self.no_price_until = (self.gap_last + 1) * MINUTE

    @staticmethod
    def _walk(rng: random.Random, start: Decimal, count: int) -> list[Decimal]:
        if start == ONE:
            return [(ONE + ppm(rng.randint(-USDT_NOISE_PPM, USDT_NOISE_PPM))).quantize(Q4) for _ in range(count)]
        prices, price = [], start.quantize(Q4)
        for _ in range(count):
            prices.append(price)
            price = (price * (ONE + ppm(rng.randint(-WALK_STEP_PPM, WALK_STEP_PPM)))).quantize(Q4)
        return prices

    def has_row(self, symbol: str, minute: int) -> bool:
        return not (symbol == GAP_MARKET and self.gap_first <= minute <= self.gap_last)

    def walk(self, market: MarketSpec, t: int) -> Decimal:
        """The index the exchange traded around at t (it exists even where a row is missing)."""
        return self.index[market.base][t // MINUTE]

    def reference(self, symbol: str, t: int) -> Decimal | None:
        """The policy's P(symbol, t): the latest row at or before t, if at most PRICE_MAX_AGE old."""
        if t < 0:
            return None
        minute = min(t // MINUTE, self.timeline.last_minute)
        if not self.has_row(symbol, minute):
            minute = self.gap_first - 1
        if t - minute * MINUTE > PRICE_MAX_AGE:
            return None
        return self.index[MARKETS_BY_SYMBOL[symbol].base][minute]

    def value(self, asset: str, t: int) -> Decimal | None:
        """The policy's V(asset, t); USDC is worth 1."""
        return ONE if asset == "USDC" else self.reference(f"{asset}_USDC", t)

    def has_price(self, symbol: str, t: int) -> bool:
        return not (symbol == GAP_MARKET and self.no_price_from < t < self.no_price_until)

    def funding_rate(self, symbol: str, t: int) -> Decimal:
        return ppm(self.funding_ppm[(symbol, t)])

    def rows(self):
        """mark_prices.jsonl, minute by minute; a perp's mark is its index plus a small premium."""
        for minute in range(self.timeline.last_minute + 1):
            stamp = self.timeline.stamp(minute * MINUTE)
            for market in MARKETS:
                if not self.has_row(market.symbol, minute):
                    continue
                index = self.index[market.base][minute]
                mark = index
                if market.is_perp:
                    mark = (index * (ONE + ppm(self.premium[market.symbol][minute]))).quantize(Q4)
                yield {"symbol": market.symbol, "indexPrice": text(index), "markPrice": text(mark), "timestamp": stamp}


# --- output ---


class BundleWriter:
    """The open output files; lines are streamed, never held."""

    def __init__(self, outdir: Path):
        bundle = outdir / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        self.files = {name: self._open(bundle / f"{name}.jsonl") for name in FILES}
        self.files["injected"] = self._open(outdir / "injected.jsonl")
        self.counts = dict.fromkeys(self.files, 0)

    @staticmethod
    def _open(path: Path):
        return open(path, "w", encoding="utf-8", newline="\n", buffering=1 << 20)

    def write(self, name: str, row: dict) -> None:
        stream = self.files[name]
        stream.write(json.dumps(row))
        stream.write("\n")
        self.counts[name] += 1

    def close(self) -> None:
        for stream in self.files.values():
            stream.close()


class Ids:
    """Ids are global counters, so they follow the order users are generated in."""

    def __init__(self):
        self.trade = itertools.count(1_000_001)
        self.ledger = itertools.count(10_000_001)
        self.deposit = itertools.count(500_001)
        self.withdrawal = itertools.count(700_001)


@dataclass
class Simulation:
    rng: random.Random
    timeline: Timeline
    prices: PriceBook
    writer: BundleWriter
    ids: Ids = field(default_factory=Ids)


# --- planning a user ---


@dataclass
class UserPlan:
    user_id: int
    fill_count: int
    markets: list[MarketSpec]
    errors: list[str]  # keys of ERROR_WEIGHTS
    extras: list[str]  # favourable_fill, surplus, no_price_fill: anomalies that are owed nothing
    is_margin: bool


def fill_counts(rng: random.Random, users: int, fills: int):
    """Split the total number of fills over the users, unevenly but exactly."""
    remaining = fills
    for left in range(users, 1, -1):
        count = min(remaining, remaining * rng.randint(30, 170) // (left * 100))
        remaining -= count
        yield count
    yield remaining


def plan_user(rng: random.Random, user_id: int, fill_count: int) -> UserPlan:
    markets = rng.sample(MARKETS, rng.randint(1, 3))
    errors = pick_errors(rng, fill_count)
    slots = fill_count - sum(FILL_SLOTS.get(kind, 0) for kind in errors)
    extras = []
    for extra, percent in (("favourable_fill", 2), ("surplus", 2), ("no_price_fill", 1)):
        if rng.randint(0, 99) < percent and slots >= FILL_SLOTS.get(extra, 0):
            if extra == "no_price_fill" and errors:
                continue  # keep its unpriced fill away from planted errors' price lookups
            extras.append(extra)
            slots -= FILL_SLOTS.get(extra, 0)
    needs_perp = "liquidation" in errors or "position_error" in errors
    if needs_perp and not any(m.is_perp for m in markets):
        markets.append(rng.choice(PERPS))
    is_margin = "margin_jump" in errors or rng.randint(0, 99) < MARGIN_USER_PERCENT
    return UserPlan(user_id, fill_count, markets, errors, extras, is_margin)


def pick_errors(rng: random.Random, fill_count: int) -> list[str]:
    if rng.randint(0, 99) >= ERROR_RATE_PERCENT:
        return []
    wanted = 2 if rng.randint(0, 99) < TWO_ERRORS_PERCENT else 1
    chosen: list[str] = []
    for _ in range(wanted):
        room = fill_count - sum(FILL_SLOTS.get(kind, 0) for kind in chosen)
        kinds = [k for k in ERROR_WEIGHTS if k not in chosen and FILL_SLOTS.get(k, 0) <= room]
        if not kinds:
            break
        chosen.append(rng.choices(kinds, weights=[ERROR_WEIGHTS[k] for k in kinds])[0])
    return chosen


# --- one user's history ---


@dataclass
class Event:
    t: int
    kind: str
    market: MarketSpec | None = None
    tag: str = ""  # for fills: opening, liquidation, bad_fill, favourable_fill, no_price_fill, or ""
    order: int = 0  # events at one instant: snapshots (1) come after everything else (0)


class UserHistory:
    """Generates one user's lines in time order from a running state of balances and positions."""

    def __init__(self, sim: Simulation, plan: UserPlan):
        self.sim, self.plan, self.rng = sim, plan, sim.rng
        self.timeline, self.prices, self.writer = sim.timeline, sim.prices, sim.writer
        self.balances: dict[str, Decimal] = {}
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # perp symbol -> (net quantity, entry price)
        self.before: tuple[dict, dict] = ({}, {})
        self.withdrawal: dict | None = None  # the planted wrong withdrawal, until its return credit
        self.events: list[Event] = []

    def run(self) -> None:
        created_at = self._write_account()
        self.events = self._plan_events(created_at)
        self.events.sort(key=lambda e: (e.t, e.order))  # stable: ties keep their planned order
        for event in self.events:
            getattr(self, f"_on_{event.kind}")(event)

    def _write_account(self) -> int:
        created_at = -self.rng.randint(30, 900) * DAY
        self.writer.write(
            "accounts",
            {
                "userId": self.plan.user_id,
                "email": f"trader{self.plan.user_id}@example.com",
                "createdAt": self.timeline.stamp(created_at),
                "locale": self.rng.choice(LOCALES),
            },
        )
        return created_at

    # planning

    def _plan_events(self, created_at: int) -> list[Event]:
        tl, rng = self.timeline, self.rng
        events = [Event(created_at + rng.randint(HOUR, 20 * DAY), "opening_deposit")]
        if self.plan.is_margin:
            events.append(Event(created_at + 21 * DAY + rng.randint(0, DAY), "margin_borrow"))
        events += self._plan_fills()
        for kind in ("deposit", "withdrawal"):
            if rng.randint(0, 99) < 30:
                events.append(Event(rng.randint(tl.activity_first, tl.activity_last), kind))
        if "wrong_withdrawal" in self.plan.errors:
            events += self._plan_wrong_withdrawal()
        if any(m.is_perp for m in self.plan.markets):
            events += [Event(t, "funding") for t in tl.funding_times()]
        events += [Event(tl.before, "before_snapshot", order=1), Event(tl.after, "after_snapshot", order=1)]
        return events

    def _plan_wrong_withdrawal(self) -> list[Event]:
        """A qualifying withdrawal (made from a day before the window until trading resumed) and its return."""
        tl, rng = self.timeline, self.rng
        variant = rng.choice(WRONG_WITHDRAWAL_VARIANTS)
        requested_at = rng.randint(tl.start - 23 * HOUR, tl.resumed - 30 * MINUTE)
        events = [Event(requested_at, "wrong_withdrawal", tag=variant)]
        if variant != "not_returned":
            # An unlinked credit is matched only up to window_end; a linked one whenever it came.
            last = tl.end - MINUTE if variant.startswith("unlinked") else requested_at + 8 * HOUR
            events.append(Event(rng.randint(requested_at + 10 * MINUTE, last), "return_credit", tag=variant))
        return events

    def _plan_fills(self) -> list[Event]:
        tl, rng, plan = self.timeline, self.rng, self.plan
        perps = [m for m in plan.markets if m.is_perp]
        planted = [kind for kind in plan.errors + plan.extras if kind in FILL_SLOTS]
        fills = []
        for kind in planted:
            if kind == "liquidation":
                # during maintenance, on a perp the user has opened before the window
                fills.append(self._fill_event(perps[0], tl.start - 22 * HOUR, tl.start - 2 * HOUR, "opening"))
                fills.append(self._fill_event(perps[0], tl.start + MINUTE, tl.resumed - MINUTE, kind))
            elif kind == "position_error":
                fills.append(self._fill_event(perps[-1], tl.start - 22 * HOUR, tl.start - 2 * HOUR, "opening"))
            elif kind == "no_price_fill":
                market = MARKETS_BY_SYMBOL[GAP_MARKET]
                fills.append(
                    Event(
                        rng.randint(self.prices.no_price_from + 1, self.prices.no_price_until - 1), "fill", market, kind
                    )
                )
            else:  # bad_fill, favourable_fill: the user's own order, in the window
                fills.append(self._fill_event(rng.choice(plan.markets), tl.start, tl.end, kind))
        for _ in range(plan.fill_count - len(fills)):
            fills.append(self._ordinary_fill_event(rng.choice(plan.markets)))
        return fills

    def _ordinary_fill_event(self, market: MarketSpec) -> Event:
        tl, roll = self.timeline, self.rng.randint(0, 99)
        if roll < 35:
            return self._fill_event(market, tl.activity_first, tl.start - 1)
        if roll < 55:
            return self._fill_event(market, tl.start, tl.end)
        return self._fill_event(market, tl.end + 1, tl.activity_last)

    def _fill_event(self, market: MarketSpec, first: int, last: int, tag: str = "") -> Event:
        t = self.rng.randint(first, last)
        if not self.prices.has_price(market.symbol, t):
            t = self.prices.no_price_until + self.rng.randint(0, 10 * MINUTE)  # after the gap instead
        if t in (self.timeline.before, self.timeline.after):
            t += 1  # never exactly at a snapshot, so "the first fill after t0" is unambiguous
        return Event(t, "fill", market, tag)

    # the journal: every balance change

    def _journal(self, t: int, asset: str, quantity: Decimal, kind: str, reference: str | None = None) -> None:
        if quantity == 0:
            return
        self.balances[asset] = self.balances.get(asset, ZERO) + quantity
        row = {
            "id": next(self.sim.ids.ledger),
            "userId": self.plan.user_id,
            "symbol": asset,
            "quantity": text(quantity),
            "kind": kind,
            "timestamp": self.timeline.stamp(t),
        }
        if reference:
            row["reference"] = reference
        self.writer.write("ledger", row)

    def _inject(self, kind: str, reference: str, asset: str, amount: Decimal | None, expect: str) -> None:
        self.writer.write(
            "injected",
            {
                "userId": self.plan.user_id,
                "kind": kind,
                "reference": reference,
                "asset": asset,
                "amount": None if amount is None else text(amount),
                "expect": expect,
            },
        )

    # deposits, withdrawals, borrows

    def _on_opening_deposit(self, event: Event) -> None:
        rng = self.rng
        self._deposit(event.t, "USDC", Decimal(rng.randint(2_000_000, 30_000_000)) * Q2)
        for asset in rng.sample(("SOL", "BTC", "ETH", "USDT"), rng.randint(0, 2)):
            usdc = Decimal(rng.randint(2_000, 40_000) * 10)  # 20k to 400k USDC worth
            self._deposit(
                event.t + rng.randint(MINUTE, HOUR), asset, quantize_down(usdc / INDEX_START[asset], ASSET_STEP[asset])
            )

    def _on_deposit(self, event: Event) -> None:
        asset = self.rng.choice(("USDC", "USDC", "SOL", "BTC", "ETH", "USDT"))
        usdc = Decimal(self.rng.randint(100_000, 5_000_000)) * Q2
        self._deposit(event.t, asset, quantize_down(usdc / self.prices.value(asset, event.t), ASSET_STEP[asset]))

    def _deposit(
        self, t: int, asset: str, quantity: Decimal, *, source: str = "blockchain", withdrawal_id: int | None = None
    ) -> dict:
        row = {
            "id": next(self.sim.ids.deposit),
            "userId": self.plan.user_id,
            "symbol": asset,
            "quantity": text(quantity),
            "source": source,
            "status": "confirmed",
            "createdAt": self.timeline.stamp(t),
        }
        if source == "blockchain":
            row["transactionHash"] = f"{self.rng.getrandbits(128):032x}"
        if withdrawal_id is not None:
            row["withdrawalId"] = withdrawal_id
        self.writer.write("deposits", row)
        self._journal(t, asset, quantity, "deposit", f"deposit:{row['id']}")
        return row

    def _on_margin_borrow(self, event: Event) -> None:
        # A margin borrow leaves the USDT balance negative; the journal explains it.
        self._journal(event.t, "USDT", -Decimal(self.rng.randint(5_000, 60_000)), "borrow")

    def _on_withdrawal(self, event: Event) -> None:
        asset = self.rng.choice([a for a, b in self.balances.items() if b > 0] or ["USDC"])
        share = Decimal(self.rng.randint(5, 40)) / 100
        quantity = quantize_down(max(self.balances.get(asset, ZERO), ZERO) * share, ASSET_STEP[asset])
        if quantity > 0:
            self._withdraw(event.t, asset, quantity, "confirmed")

    def _withdraw(self, t: int, asset: str, quantity: Decimal, status: str) -> dict:
        fee = WITHDRAWAL_FEE[asset]
        row = {
            "id": next(self.sim.ids.withdrawal),
            "userId": self.plan.user_id,
            "symbol": asset,
            "quantity": text(quantity),
            "fee": text(fee),
            "status": status,
            "blockchain": BLOCKCHAIN[asset],
            "toAddress": f"addr{self.rng.getrandbits(64):016x}",
            "createdAt": self.timeline.stamp(t),
            "isInternal": False,
        }
        if status == "confirmed":
            row["transactionHash"] = f"{self.rng.getrandbits(128):032x}"
        self.writer.write("withdrawals", row)
        # The balance is debited when the request is made; a failed one is credited back by a deposit, or not.
        self._journal(t, asset, -(quantity + fee), "withdrawal", f"withdrawal:{row['id']}")
        return row

    # fills

    def _on_fill(self, event: Event) -> None:
        market, rng = event.market, self.rng
        index = self.prices.walk(market, event.t)
        side, quantity = self._side_and_quantity(event, index)
        price = (index * (ONE + self._deviation(event.tag, side))).quantize(market.tick, rounding=ROUND_HALF_UP)
        is_liquidation = event.tag == "liquidation"
        is_maker = not is_liquidation and rng.randint(0, 1) == 1
        rate = Decimal("0.005") if is_liquidation else Decimal("0.0002") if is_maker else Decimal("0.0005")
        fee = (price * quantity * rate).quantize(Q6, rounding=ROUND_HALF_UP)
        trade_id = next(self.sim.ids.trade)
        self.writer.write(
            "fills",
            {
                "userId": self.plan.user_id,
                "tradeId": trade_id,
                "orderId": str(rng.getrandbits(40)),
                "symbol": market.symbol,
                "side": side,
                "price": text(price),
                "quantity": text(quantity),
                "fee": text(fee),
                "feeSymbol": "USDC",
                "isMaker": is_maker,
                "systemOrderType": rng.choice(LIQUIDATION_TYPES) if is_liquidation else None,
                "timestamp": self.timeline.stamp(event.t),
            },
        )
        reference = f"fill:{trade_id}:{side}"
        self._book_fill(event, side, quantity, price, fee, reference)
        if event.tag in ("liquidation", "bad_fill", "favourable_fill", "no_price_fill"):
            self._inject_fill(event, side, quantity, price, fee, reference)

    def _side_and_quantity(self, event: Event, index: Decimal) -> tuple[str, Decimal]:
        market, rng = event.market, self.rng
        net = self.positions.get(market.symbol, (ZERO, ZERO))[0]
        if event.tag == "liquidation" and net != 0:
            # the exchange closes part or all of the position
            share = Decimal(rng.randint(30, 100)) / 100
            return ("Ask" if net > 0 else "Bid"), max(quantize_down(abs(net) * share, market.lot), market.lot)
        notional = Decimal(rng.randint(200, 25_000))
        quantity = max(quantize_down(notional / index, market.lot), market.lot)
        side = rng.choice(("Bid", "Ask"))
        if not market.is_perp and side == "Ask" and self.balances.get(market.base, ZERO) < quantity:
            side = "Bid"  # spot: sell only what is held
        return side, quantity

    def _deviation(self, tag: str, side: str) -> Decimal:
        """How far the fill price is from the index; positive means worse for the user."""
        worse = -fill_direction(side)  # a buyer loses on a higher price, a seller on a lower one
        if tag == "liquidation":
            return worse * ppm(self.rng.randint(20_000, 80_000))
        if tag == "bad_fill":
            return worse * ppm(self.rng.randint(10_000, 50_000))
        if tag == "favourable_fill":
            return -worse * ppm(self.rng.randint(10_000, 30_000))
        # ordinary slippage; with the tick it stays within 0.2%, under the 0.5% tolerance
        return ppm(self.rng.randint(-1_500, 1_500))

    def _book_fill(
        self, event: Event, side: str, quantity: Decimal, price: Decimal, fee: Decimal, reference: str
    ) -> None:
        market, t = event.market, event.t
        signed = quantity if side == "Bid" else -quantity
        if market.is_perp:
            realized = self._trade_perp(market.symbol, signed, price)
            self._journal(t, "USDC", realized, "liquidation" if event.tag == "liquidation" else "pnl", reference)
        else:
            self._journal(t, market.base, signed, "trade", reference)
            self._journal(t, "USDC", -(signed * price).quantize(Q6, rounding=ROUND_HALF_UP), "trade", reference)
        self._journal(t, "USDC", -fee, "fee", reference)

    def _trade_perp(self, symbol: str, signed: Decimal, price: Decimal) -> Decimal:
        """Apply a perp fill to the position; returns the realized PnL in USDC."""
        net, entry = self.positions.get(symbol, (ZERO, ZERO))
        new_net = net + signed
        realized = ZERO
        if net == 0 or (net > 0) == (signed > 0):
            entry = ((abs(net) * entry + abs(signed) * price) / abs(new_net)).quantize(Q4, rounding=ROUND_HALF_UP)
        else:
            closed = min(abs(net), abs(signed))
            realized = ((price - entry) * closed * (1 if net > 0 else -1)).quantize(Q6, rounding=ROUND_HALF_UP)
            if new_net == 0:
                entry = ZERO
            elif (new_net > 0) != (net > 0):
                entry = price  # flipped: what is left opens at this fill's price
        self.positions[symbol] = (new_net, entry)
        return realized

    def _inject_fill(
        self, event: Event, side: str, quantity: Decimal, price: Decimal, fee: Decimal, reference: str
    ) -> None:
        pf = self.prices.reference(event.market.symbol, event.t)
        if event.tag == "no_price_fill":
            self._inject("bad_fill", reference, "USDC", None, "needs_review")
        elif event.tag == "liquidation":
            owed = liquidation_owed(reference_price=pf, price=price, quantity=quantity, side=side, fee=fee)
            self._inject("liquidation", reference, "USDC", to_asset(owed, "USDC"), "item")
        elif event.tag == "bad_fill":
            owed = fill_slippage(reference_price=pf, price=price, quantity=quantity, side=side)
            self._inject("bad_fill", reference, "USDC", to_asset(owed, "USDC"), "item")
        else:  # a favourable price is not a bad fill: a claim about it is answered no_loss
            self._inject("bad_fill", reference, "USDC", to_asset(ZERO, "USDC"), "no_loss")

    def _on_funding(self, event: Event) -> None:
        for symbol, (net, _entry) in self.positions.items():
            index = self.prices.walk(MARKETS_BY_SYMBOL[symbol], event.t)
            payment = -(net * index * self.prices.funding_rate(symbol, event.t)).quantize(Q6, rounding=ROUND_HALF_UP)
            self._journal(event.t, "USDC", payment, "funding")
        borrowed = self.balances.get("USDT", ZERO)
        if borrowed < 0:
            self._journal(
                event.t, "USDT", (borrowed * Decimal("0.00003")).quantize(Q6, rounding=ROUND_HALF_UP), "interest"
            )

    # the planted wrong withdrawal (July 3: failed withdrawals returned in another asset, or not at all)

    def _on_wrong_withdrawal(self, event: Event) -> None:
        rng = self.rng
        asset = rng.choice(("USDC", "USDC", "USDC", "SOL", "BTC", "ETH"))
        held = self.balances.get(asset, ZERO)
        if held <= 0:
            held = Decimal(rng.randint(10_000, 150_000)) / self.prices.value(asset, event.t)
        quantity = quantize_down(held * Decimal(rng.randint(40, 90)) / 100, ASSET_STEP[asset])
        if event.tag == "not_returned":
            row = self._withdraw(event.t, asset, quantity, rng.choice(("failed", "cancelled")))
            owed = quantity + WITHDRAWAL_FEE[asset]
            self._inject("wrong_withdrawal", f"withdrawal:{row['id']}", asset, to_asset(owed, asset), "item")
        else:
            row = self._withdraw(event.t, asset, quantity, rng.choice(("failed", "returned")))
            self.withdrawal = {"id": row["id"], "asset": asset, "quantity": quantity}

    def _on_return_credit(self, event: Event) -> None:
        rng, withdrawal = self.rng, self.withdrawal
        asset, owed = withdrawal["asset"], withdrawal["quantity"] + WITHDRAWAL_FEE[withdrawal["asset"]]
        if event.tag.endswith("short"):
            returned_asset = asset
            quantity = quantize_down(owed * Decimal(rng.randint(90, 99)) / 100, ASSET_STEP[asset])
        else:
            returned_asset = rng.choice([a for a in ("USDC", "SOL", "BTC", "ETH") if a != asset])
            # worth 30% to 95% of what was withdrawn, so something is always owed
            worth = owed * self.prices.value(asset, event.t) * Decimal(rng.randint(30, 95)) / 100
            quantity = quantize_down(worth / self.prices.value(returned_asset, event.t), ASSET_STEP[returned_asset])
        link = None if event.tag.startswith("unlinked") else withdrawal["id"]
        self._deposit(event.t, returned_asset, quantity, source="internal", withdrawal_id=link)
        self._inject_wrong_withdrawal(event.t, returned_asset, quantity)

    def _inject_wrong_withdrawal(self, t: int, returned_asset: str, returned: Decimal) -> None:
        withdrawal = self.withdrawal
        asset = withdrawal["asset"]
        with localcontext(prec=60):
            if returned_asset == asset:  # the policy's ratio is exactly 1 in the same asset
                returned_in_usdc, unit_in_usdc = returned, ONE
            else:
                returned_in_usdc = returned * self.prices.value(returned_asset, t)
                unit_in_usdc = self.prices.value(asset, t)
            owed = wrong_withdrawal_owed(
                quantity=withdrawal["quantity"],
                fee=WITHDRAWAL_FEE[asset],
                returned_in_usdc=returned_in_usdc,
                withdrawn_unit_in_usdc=unit_in_usdc,
            )
        self._inject("wrong_withdrawal", f"withdrawal:{withdrawal['id']}", asset, to_asset(owed, asset), "item")

    # snapshots, and the errors planted in the one taken when trading resumed

    def _on_before_snapshot(self, event: Event) -> None:
        self.before = (dict(self.balances), dict(self.positions))

    def _on_after_snapshot(self, event: Event) -> None:
        balances, positions = dict(self.balances), dict(self.positions)
        self._plant_snapshot_errors(balances, positions)
        before_balances, before_positions = self.before
        tl, user_id = self.timeline, self.plan.user_id
        for asset, total in balances.items():
            for t, value in ((tl.before, before_balances.get(asset, ZERO)), (tl.after, total)):
                self.writer.write(
                    "balance_snapshots",
                    {"userId": user_id, "symbol": asset, "total": text(value), "snapshotAt": tl.stamp(t)},
                )
        for symbol, position in positions.items():
            for t, (net, entry) in ((tl.before, before_positions.get(symbol, (ZERO, ZERO))), (tl.after, position)):
                self.writer.write(
                    "position_snapshots",
                    {
                        "userId": user_id,
                        "symbol": symbol,
                        "netQuantity": text(net),
                        "entryPrice": text(entry),
                        "snapshotAt": tl.stamp(t),
                    },
                )
        # From here on the exchange works from the wrong numbers, as it did on July 3.
        self.balances, self.positions = balances, positions

    def _plant_snapshot_errors(self, balances: dict, positions: dict) -> None:
        kinds = self.plan.errors + self.plan.extras
        # One planted change per asset, so each line's amount is exact; a margin jump is
        # USDT's, whichever of the user's errors comes first.
        taken: list[str] = ["USDT"] if "margin_jump" in kinds else []
        for kind in kinds:
            if kind == "position_error":
                self._flip_position(positions)
            elif kind == "margin_jump":
                self._change_balance(balances, "USDT", -self._margin_jump(balances.get("USDT", ZERO)), "item")
            elif kind in ("holdings_gone", "surplus"):
                asset = self._pick_asset(balances, taken, prefer_crypto=kind == "holdings_gone")
                if asset is not None:
                    taken.append(asset)
                    share = Decimal(self.rng.randint(20, 100) if kind == "holdings_gone" else self.rng.randint(1, 20))
                    change = quantize_down(balances[asset] * share / 100, ASSET_STEP[asset])
                    sign, expect = (-1, "item") if kind == "holdings_gone" else (1, "surplus")
                    self._change_balance(balances, asset, sign * change, expect)

    def _margin_jump(self, balance: Decimal) -> Decimal:
        """A debit that jumped, e.g. -31000 to -111000: one to three times the balance again."""
        base = abs(balance) if balance else Decimal(self.rng.randint(10_000, 60_000))
        return quantize_down(base * Decimal(self.rng.randint(100, 300)) / 100, Q2)

    def _pick_asset(self, balances: dict, taken: list[str], *, prefer_crypto: bool) -> str | None:
        held = [a for a, total in balances.items() if total > 0 and a not in taken]
        crypto = [a for a in held if a not in ("USDC", "USDT")]
        choices = crypto if prefer_crypto and crypto else held
        return self.rng.choice(choices) if choices else None

    def _change_balance(self, balances: dict, asset: str, change: Decimal, expect: str) -> None:
        """A balance that moved with no journal entry: `delta = change` for the policy's missing funds."""
        if change == 0:
            return
        balances[asset] = balances.get(asset, ZERO) + change
        self._inject("missing_funds", f"balance:{asset}", asset, to_asset(abs(change), asset), expect)

    def _flip_position(self, positions: dict) -> None:
        """The position came back reversed at resumption: long 10 became short 10 (delta = -20)."""
        wanted = [m.symbol for m in self.plan.markets if m.is_perp][-1]
        candidates = [wanted] + [s for s in positions if s != wanted]
        symbol = next((s for s in candidates if positions.get(s, (ZERO,))[0] != 0), None)
        if symbol is None:
            return
        expected, entry = positions[symbol]
        positions[symbol] = (-expected, entry)
        self._inject_position_error(symbol, delta=-2 * expected)

    def _inject_position_error(self, symbol: str, *, delta: Decimal) -> None:
        tl = self.timeline
        later = (e.t for e in self.events if e.kind == "fill" and e.market.symbol == symbol and e.t > tl.after)
        ends_at = min(next(later, tl.evaluation_end), tl.evaluation_end)
        price_at_error, price_at_end = self.prices.reference(symbol, tl.after), self.prices.reference(symbol, ends_at)
        if price_at_error is None or price_at_end is None:
            self._inject("position_error", f"position:{symbol}", "USDC", None, "needs_review")
            return
        owed = to_asset(
            position_error_owed(delta=delta, price_at_error=price_at_error, price_at_end=price_at_end), "USDC"
        )
        self._inject("position_error", f"position:{symbol}", "USDC", owed, "item" if owed > 0 else "no_loss")


# --- the whole run ---


def simulate(
    *, outdir: Path, users: int, seed: int, fills: int | None = None, window_start: datetime | None = None
) -> dict[str, int]:
    """Write a simulated incident under outdir; returns the number of lines of each file."""
    timeline = Timeline(window_start or default_window_start(datetime.now(UTC)))
    rng = random.Random(seed)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "incident.json").write_text(json.dumps(timeline.incident(), indent=2) + "\n", encoding="utf-8")
    writer = BundleWriter(outdir)
    try:
        sim = Simulation(rng=rng, timeline=timeline, prices=PriceBook(rng, timeline), writer=writer)
        _write_reference_data(writer, sim.prices)
        counts = fill_counts(rng, users, users * 10 if fills is None else fills)
        for user_id, fill_count in zip(range(USER_ID_START, USER_ID_START + users), counts):
            UserHistory(sim, plan_user(rng, user_id, fill_count)).run()
    finally:
        writer.close()
    return writer.counts


def _write_reference_data(writer: BundleWriter, prices: PriceBook) -> None:
    for asset, decimals in ASSET_DECIMALS.items():
        writer.write("assets", {"symbol": asset, "decimals": decimals})
    for market in MARKETS:
        writer.write(
            "markets",
            {
                "symbol": market.symbol,
                "baseSymbol": market.base,
                "quoteSymbol": "USDC",
                "marketType": "PERP" if market.is_perp else "SPOT",
            },
        )
    for row in prices.rows():
        writer.write("mark_prices", row)
