"""The compensation policy's detectors: small pure functions over one user's ledger.

Each follows compensation-policy.md to the letter and knows nothing of the database:
it reads rows (anything with the ledger's attribute names), a price lookup and the
incident's settings, and returns what it found with every input it used, so staff
and the claimant can recompute each amount by hand.

Arithmetic runs at 60 significant digits (the policy asks for at least 34); each
amount is quantized once, at the end, to its asset's decimals with ROUND_HALF_UP.
"""

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

PRECISION = 60
ZERO = Decimal(0)
ONE = Decimal(1)
LIQUIDATION_PREFIX = "LiquidatePositionOn"
RETURNABLE_STATUSES = ("failed", "cancelled", "returned")
USDC = "USDC"


@dataclass(frozen=True)
class Policy:
    """The incident settings the detectors read."""

    window_start: datetime
    trading_resumed: datetime
    window_end: datetime
    evaluation_end: datetime
    price_reference: str  # "index" or "mark"
    price_max_age: int  # seconds
    bad_fill_tolerance_bps: int

    def in_window(self, t: datetime) -> bool:
        return self.window_start <= t <= self.window_end


@dataclass(frozen=True)
class Price:
    symbol: str
    value: Decimal
    at: datetime  # the timestamp of the mark_prices row used

    def as_input(self) -> dict[str, str]:
        return {"symbol": self.symbol, "price": str(self.value), "at": iso(self.at)}


class Prices:
    """P(symbol, t): the latest price at or before t, no older than price_max_age.

    Holds each market's series in memory, sorted by time. `fetch_before`, when given,
    answers instants the loaded series cannot (before its first row or after
    `loaded_until`); it returns the latest (timestamp, mark, index) at or before t.
    """

    def __init__(
        self,
        series: dict[str, Sequence[tuple[datetime, Decimal, Decimal]]],
        *,
        reference: str,
        max_age: int,
        loaded_from: datetime | None = None,
        loaded_until: datetime | None = None,
        fetch_before: Callable[[str, datetime], tuple | None] | None = None,
    ):
        column = 2 if reference == "index" else 1
        self._times = {s: [row[0] for row in rows] for s, rows in series.items()}
        self._values = {s: [row[column] for row in rows] for s, rows in series.items()}
        self._column = column
        self._max_age = timedelta(seconds=max_age)
        self._loaded_from, self._loaded_until = loaded_from, loaded_until
        self._fetch_before = fetch_before
        self._fetched: dict[tuple[str, datetime], Price | None] = {}

    def at(self, symbol: str, t: datetime) -> Price | None:
        covered = (self._loaded_from is None or t - self._max_age >= self._loaded_from) and (
            self._loaded_until is None or t <= self._loaded_until
        )
        if not covered and self._fetch_before is not None:
            return self._fetch(symbol, t)
        times = self._times.get(symbol, ())
        i = bisect_right(times, t) - 1
        if i < 0 or t - times[i] > self._max_age:
            return None
        return Price(symbol, self._values[symbol][i], times[i])

    def _fetch(self, symbol: str, t: datetime) -> Price | None:
        key = (symbol, t)
        if key not in self._fetched:
            row = self._fetch_before(symbol, t)
            ok = row is not None and t - row[0] <= self._max_age
            self._fetched[key] = Price(symbol, row[self._column], row[0]) if ok else None
        return self._fetched[key]

    def usdc_value(self, asset: str, t: datetime) -> Price | None:
        """V(asset, t) = P(ASSET_USDC, t); USDC is worth 1."""
        if asset == USDC:
            return Price(USDC, ONE, t)
        return self.at(f"{asset}_USDC", t)


@dataclass(frozen=True)
class Market:
    symbol: str
    base_symbol: str
    quote_symbol: str
    market_type: str


@dataclass
class UserLedger:
    """One user's rows, as the detectors need them (any objects with the ledger's attributes)."""

    user_id: int
    fills: Sequence[Any] = ()
    withdrawals: Sequence[Any] = ()
    deposits: Sequence[Any] = ()
    journal: Sequence[Any] = ()
    balance_snapshots: Sequence[Any] = ()
    position_snapshots: Sequence[Any] = ()


@dataclass(frozen=True)
class Context:
    policy: Policy
    prices: Prices
    markets: dict[str, Market]
    decimals: dict[str, int]


@dataclass
class Detected:
    """One evaluated event in one asset. amount None: needs review; 0: nothing owed (not an item)."""

    kind: str
    reference: str
    asset: str
    amount: Decimal | None
    formula: str
    inputs: dict[str, Any]
    event_at: datetime
    review_reason: str = ""
    corrective_action: str = ""

    @property
    def is_owed(self) -> bool:
        return self.amount is None or self.amount > 0


@dataclass
class DetectedFinding:
    kind: str  # balance_surplus | position_correction
    reference: str
    asset: str
    quantity: Decimal
    description: str
    inputs: dict[str, Any] = field(default_factory=dict)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def quantize(amount: Decimal, decimals: int) -> Decimal:
    # The policy's single rounding: to the asset's decimals, half up, once, at the end.
    with localcontext(prec=PRECISION):
        return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def no_price_reason(symbol: str, t: datetime) -> str:
    return f"no price for {symbol} at {iso(t)}"


def fill_reference(fill) -> str:
    return f"fill:{fill.trade_id}:{fill.side}"


def fill_direction(fill) -> int:
    """+1 for an Ask fill (the user sold), -1 for a Bid fill (bought)."""
    return 1 if fill.side == "Ask" else -1


def is_liquidation(fill) -> bool:
    return bool(fill.system_order_type) and fill.system_order_type.startswith(LIQUIDATION_PREFIX)


def _fill_inputs(fill, price: Price | None) -> dict[str, Any]:
    inputs = {
        "fill": fill_reference(fill),
        "order_id": getattr(fill, "order_id", None),
        "symbol": fill.symbol,
        "side": fill.side,
        "price": str(fill.price),
        "quantity": str(fill.quantity),
        "fee": str(fill.fee),
        "fee_symbol": fill.fee_symbol,
        "timestamp": iso(fill.timestamp),
        "system_order_type": fill.system_order_type,
    }
    if price is not None:
        inputs["reference_price"] = price.as_input()
    return inputs


def _needs_review(
    kind: str,
    reference: str,
    asset: str,
    t: datetime,
    reason: str,
    formula: str,
    inputs: dict[str, Any],
    corrective_action: str = "",
) -> Detected:
    return Detected(
        kind, reference, asset, None, formula, inputs, t, review_reason=reason, corrective_action=corrective_action
    )


# --- liquidation ---

LIQUIDATION_FORMULA = "liquidation: max(0, (Pf - price) * q * dir) + fee+"
LIQUIDATION_FEE_FORMULA = "liquidation fee: fee+ = max(0, fee), in the fee's own asset"


def detect_liquidations(ledger: UserLedger, ctx: Context) -> list[Detected]:
    found = []
    for fill in ledger.fills:
        if not (is_liquidation(fill) and ctx.policy.in_window(fill.timestamp)):
            continue
        quote = ctx.markets[fill.symbol].quote_symbol
        reference = fill_reference(fill)
        pf = ctx.prices.at(fill.symbol, fill.timestamp)
        if pf is None:
            found.append(
                _needs_review(
                    "liquidation",
                    reference,
                    quote,
                    fill.timestamp,
                    no_price_reason(fill.symbol, fill.timestamp),
                    LIQUIDATION_FORMULA,
                    _fill_inputs(fill, None),
                )
            )
            continue
        with localcontext(prec=PRECISION):
            slippage = max(ZERO, (pf.value - fill.price) * fill.quantity * fill_direction(fill))
            fee_plus = max(ZERO, fill.fee)
            fee_in_quote = fill.fee_symbol == quote
            amount = slippage + (fee_plus if fee_in_quote else ZERO)
        inputs = _fill_inputs(fill, pf) | {
            "slippage": str(slippage),
            "fee_added": str(fee_plus if fee_in_quote else ZERO),
        }
        found.append(
            Detected(
                "liquidation",
                reference,
                quote,
                quantize(amount, ctx.decimals[quote]),
                LIQUIDATION_FORMULA,
                inputs,
                fill.timestamp,
            )
        )
        if not fee_in_quote:
            found.append(
                Detected(
                    "liquidation",
                    reference,
                    fill.fee_symbol,
                    quantize(fee_plus, ctx.decimals[fill.fee_symbol]),
                    LIQUIDATION_FEE_FORMULA,
                    _fill_inputs(fill, None),
                    fill.timestamp,
                )
            )
    return found


# --- bad fill ---

BAD_FILL_FORMULA = "bad_fill: (Pf - price) * q * dir, when (Pf - price) * dir / Pf > tolerance"


def detect_bad_fills(ledger: UserLedger, ctx: Context) -> list[Detected]:
    """The user's own fills in the window; amount 0 for a fill within the tolerance."""
    found = []
    with localcontext(prec=PRECISION):
        tolerance = Decimal(ctx.policy.bad_fill_tolerance_bps) / 10000
    for fill in ledger.fills:
        if fill.system_order_type or not ctx.policy.in_window(fill.timestamp):
            continue
        quote = ctx.markets[fill.symbol].quote_symbol
        reference = fill_reference(fill)
        pf = ctx.prices.at(fill.symbol, fill.timestamp)
        if pf is None or pf.value <= 0:
            reason = (
                no_price_reason(fill.symbol, fill.timestamp)
                if pf is None
                else (f"price for {fill.symbol} at {iso(fill.timestamp)} is not positive")
            )
            found.append(
                _needs_review(
                    "bad_fill", reference, quote, fill.timestamp, reason, BAD_FILL_FORMULA, _fill_inputs(fill, pf)
                )
            )
            continue
        with localcontext(prec=PRECISION):
            adverse = (pf.value - fill.price) * fill_direction(fill)
            deviation = adverse / pf.value
            amount = adverse * fill.quantity if deviation > tolerance else ZERO
        inputs = _fill_inputs(fill, pf) | {"deviation": str(deviation), "tolerance": str(tolerance)}
        found.append(
            Detected(
                "bad_fill",
                reference,
                quote,
                quantize(amount, ctx.decimals[quote]),
                BAD_FILL_FORMULA,
                inputs,
                fill.timestamp,
            )
        )
    return found


# --- wrong withdrawal ---

WRONG_WITHDRAWAL_FORMULA = "wrong_withdrawal: max(0, W.quantity + W.fee - sum(D.quantity * V(D) / V(W)))"


def _created_order(row) -> tuple:
    return (row.created_at, row.id)


def qualifying_withdrawals(ledger: UserLedger, policy: Policy) -> list:
    earliest = policy.window_start - timedelta(hours=24)
    return sorted(
        (
            w
            for w in ledger.withdrawals
            if w.status in RETURNABLE_STATUSES and earliest <= w.created_at < policy.trading_resumed
        ),
        key=_created_order,
    )


def return_credits(ledger: UserLedger, policy: Policy) -> list[tuple[Any, list]]:
    """Each qualifying withdrawal with its return credits: links first, then pairing."""
    withdrawals = qualifying_withdrawals(ledger, policy)
    credits: dict[int, list] = {w.id: [] for w in withdrawals}
    candidates = sorted(
        (d for d in ledger.deposits if d.source == "internal" and d.status == "confirmed"), key=_created_order
    )
    for deposit in candidates:
        if deposit.withdrawal_id in credits:
            credits[deposit.withdrawal_id].append(deposit)
    unlinked = [d for d in candidates if d.withdrawal_id is None]
    taken: set[int] = set()
    for withdrawal in withdrawals:
        if credits[withdrawal.id]:
            continue
        eligible = [
            d for d in unlinked if d.id not in taken and withdrawal.created_at <= d.created_at <= policy.window_end
        ]
        same_asset = [d for d in eligible if d.symbol == withdrawal.symbol]
        chosen = (same_asset or eligible)[:1]
        taken.update(d.id for d in chosen)  # taken for good, even if it leaves 0 owed or needs review
        credits[withdrawal.id] = chosen
    return [(w, credits[w.id]) for w in withdrawals]


def _unusable_value(value: Price | None, asset: str, t: datetime) -> str:
    """Why V(asset, t) cannot value a return credit ("" if it can): none, or not positive."""
    if value is None:
        return no_price_reason(f"{asset}_USDC", t)
    if value.value <= 0:
        return f"price for {asset}_USDC at {iso(t)} is not positive"
    return ""


def detect_wrong_withdrawals(ledger: UserLedger, ctx: Context) -> list[Detected]:
    found = []
    for withdrawal, deposits in return_credits(ledger, ctx.policy):
        reference = f"withdrawal:{withdrawal.id}"
        inputs: dict[str, Any] = {
            "withdrawal": withdrawal.id,
            "symbol": withdrawal.symbol,
            "quantity": str(withdrawal.quantity),
            "fee": str(withdrawal.fee),
            "status": withdrawal.status,
            "created_at": iso(withdrawal.created_at),
            "transaction_hash": getattr(withdrawal, "transaction_hash", None),
            "return_credits": [],
        }
        missing = None
        with localcontext(prec=PRECISION):
            returned = ZERO
            for deposit in deposits:  # left to right, in createdAt-then-id order
                credit = {
                    "deposit": deposit.id,
                    "symbol": deposit.symbol,
                    "quantity": str(deposit.quantity),
                    "created_at": iso(deposit.created_at),
                }
                if deposit.symbol == withdrawal.symbol:
                    worth = deposit.quantity  # the ratio is exactly 1
                else:
                    v_d = ctx.prices.usdc_value(deposit.symbol, deposit.created_at)
                    v_w = ctx.prices.usdc_value(withdrawal.symbol, deposit.created_at)
                    unusable = _unusable_value(v_d, deposit.symbol, deposit.created_at) or _unusable_value(
                        v_w, withdrawal.symbol, deposit.created_at
                    )
                    if unusable:
                        missing = missing or unusable
                        inputs["return_credits"].append(credit)
                        continue
                    worth = deposit.quantity * v_d.value / v_w.value
                    credit |= {"value_of_deposit": v_d.as_input(), "value_of_withdrawal": v_w.as_input()}
                credit["worth_in_withdrawal_asset"] = str(worth)
                inputs["return_credits"].append(credit)
                returned += worth
            amount = max(ZERO, withdrawal.quantity + withdrawal.fee - returned)
        if missing:
            found.append(
                _needs_review(
                    "wrong_withdrawal",
                    reference,
                    withdrawal.symbol,
                    withdrawal.created_at,
                    missing,
                    WRONG_WITHDRAWAL_FORMULA,
                    inputs,
                )
            )
            continue
        inputs["returned"] = str(returned)
        found.append(
            Detected(
                "wrong_withdrawal",
                reference,
                withdrawal.symbol,
                quantize(amount, ctx.decimals[withdrawal.symbol]),
                WRONG_WITHDRAWAL_FORMULA,
                inputs,
                withdrawal.created_at,
            )
        )
    return found


# --- snapshots: before and after the incident ---


def before_and_after(snapshots: Iterable[Any], policy: Policy) -> tuple[Any | None, Any | None]:
    """The latest snapshot at or before window_start and the earliest at or after trading_resumed."""
    ordered = sorted(snapshots, key=lambda s: s.snapshot_at)
    before = None
    for snapshot in ordered:
        if snapshot.snapshot_at <= policy.window_start:
            before = snapshot
    after = next((s for s in ordered if s.snapshot_at >= policy.trading_resumed), None)
    return before, after


def _between(t: datetime, before, after) -> bool:
    return (before is None or before.snapshot_at < t) and t <= after.snapshot_at


def _group(rows: Iterable[Any], key: str) -> dict[str, list]:
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(getattr(row, key), []).append(row)
    return groups


# --- position error ---

POSITION_FORMULA = "position_error: max(0, -delta * (P1 - P0))"


def detect_position_errors(ledger: UserLedger, ctx: Context) -> tuple[list[Detected], list[DetectedFinding]]:
    found, findings = [], []
    fills_by_market = _group(ledger.fills, "symbol")
    for symbol, snapshots in sorted(_group(ledger.position_snapshots, "symbol").items()):
        before, after = before_and_after(snapshots, ctx.policy)
        if after is None:
            continue
        fills = fills_by_market.get(symbol, [])
        with localcontext(prec=PRECISION):
            expected = before.net_quantity if before is not None else ZERO
            for fill in fills:
                if _between(fill.timestamp, before, after):
                    expected += fill.quantity if fill.side == "Bid" else -fill.quantity
            delta = after.net_quantity - expected
        if delta == 0:
            continue
        detected, finding = _position_error(symbol, before, after, expected, delta, fills, ctx)
        found.append(detected)
        findings.append(finding)
    return found, findings


def _position_error(symbol, before, after, expected, delta, fills, ctx: Context):
    quote = ctx.markets[symbol].quote_symbol
    t0 = after.snapshot_at
    later = [f.timestamp for f in fills if f.timestamp > t0]
    t1 = min([*later, ctx.policy.evaluation_end])
    action = f"restore netQuantity of {symbol} from {after.net_quantity.normalize():f} to {expected.normalize():f}"
    inputs: dict[str, Any] = {
        "symbol": symbol,
        "before": _snapshot_input(before, "net_quantity"),
        "after": _snapshot_input(after, "net_quantity"),
        "expected": str(expected),
        "delta": str(delta),
        "t0": iso(t0),
        "t1": iso(t1),
        "t1_is": "first fill after t0" if later and min(later) < ctx.policy.evaluation_end else "evaluation_end",
    }
    finding = DetectedFinding("position_correction", f"position:{symbol}", symbol, delta, action, inputs)
    p0, p1 = ctx.prices.at(symbol, t0), ctx.prices.at(symbol, t1)
    if p0 is None or p1 is None:
        reason = no_price_reason(symbol, t0 if p0 is None else t1)
        return _needs_review(
            "position_error", f"position:{symbol}", quote, t1, reason, POSITION_FORMULA, inputs, action
        ), finding
    with localcontext(prec=PRECISION):
        amount = max(ZERO, -delta * (p1.value - p0.value))
    inputs |= {"P0": p0.as_input(), "P1": p1.as_input()}
    detected = Detected(
        "position_error",
        f"position:{symbol}",
        quote,
        quantize(amount, ctx.decimals[quote]),
        POSITION_FORMULA,
        inputs,
        t1,
        corrective_action=action,
    )
    return detected, finding


def _snapshot_input(snapshot, attribute: str) -> dict[str, str] | None:
    if snapshot is None:
        return None
    return {"snapshot_at": iso(snapshot.snapshot_at), attribute: str(getattr(snapshot, attribute))}


# --- missing funds ---

MISSING_FUNDS_FORMULA = "missing_funds: -(after.total - (before.total + journal))"


def detect_missing_funds(ledger: UserLedger, ctx: Context) -> tuple[list[Detected], list[DetectedFinding]]:
    found, findings = [], []
    journal_by_asset = _group(ledger.journal, "symbol")
    for asset, snapshots in sorted(_group(ledger.balance_snapshots, "symbol").items()):
        before, after = before_and_after(snapshots, ctx.policy)
        if after is None:
            continue
        entries = [e for e in journal_by_asset.get(asset, []) if _between(e.timestamp, before, after)]
        with localcontext(prec=PRECISION):
            journal = sum((e.quantity for e in entries), ZERO)
            start = before.total if before is not None else ZERO
            delta = after.total - (start + journal)
        inputs = {
            "asset": asset,
            "before": _snapshot_input(before, "total"),
            "after": _snapshot_input(after, "total"),
            "journal": str(journal),
            "journal_entries": len(entries),
            "delta": str(delta),
        }
        if delta > 0:
            findings.append(
                DetectedFinding(
                    "balance_surplus",
                    f"balance:{asset}",
                    asset,
                    delta,
                    f"{asset} balance is {delta.normalize():f} higher than the journal "
                    "explains; reported to staff, never debited",
                    inputs,
                )
            )
        elif delta < 0:
            found.append(
                Detected(
                    "missing_funds",
                    f"balance:{asset}",
                    asset,
                    quantize(-delta, ctx.decimals[asset]),
                    MISSING_FUNDS_FORMULA,
                    inputs,
                    after.snapshot_at,
                )
            )
    return found, findings


def detect_all(ledger: UserLedger, ctx: Context) -> tuple[list[Detected], list[DetectedFinding]]:
    """Every detector over one user: evaluated events (owed or not) and findings for staff."""
    positions, position_findings = detect_position_errors(ledger, ctx)
    funds, surpluses = detect_missing_funds(ledger, ctx)
    detected = [
        *detect_liquidations(ledger, ctx),
        *detect_bad_fills(ledger, ctx),
        *detect_wrong_withdrawals(ledger, ctx),
        *positions,
        *funds,
    ]
    return detected, [*position_findings, *surpluses]
