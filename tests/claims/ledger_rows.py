"""In-memory ledger rows and a detection context for the pure detector tests."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from claims import detectors as d

WINDOW_START = datetime(2025, 7, 3, 10, 0, tzinfo=UTC)
TRADING_RESUMED = datetime(2025, 7, 3, 12, 10, tzinfo=UTC)
WINDOW_END = datetime(2025, 7, 3, 16, 0, tzinfo=UTC)
EVALUATION_END = datetime(2025, 7, 4, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)

POLICY = d.Policy(WINDOW_START, TRADING_RESUMED, WINDOW_END, EVALUATION_END, "index", 300, 50)
MARKETS = {
    "SOL_USDC": d.Market("SOL_USDC", "SOL", "USDC", "SPOT"),
    "BTC_USDC": d.Market("BTC_USDC", "BTC", "USDC", "SPOT"),
    "SOL_USDC_PERP": d.Market("SOL_USDC_PERP", "SOL", "USDC", "PERP"),
}
DECIMALS = {"USDC": 6, "USDT": 6, "SOL": 9, "BTC": 8}


def at(hh_mm: str, seconds: float = 0, day: int = 3) -> datetime:
    hours, minutes = map(int, hh_mm.split(":"))
    return datetime(2025, 7, day, hours, minutes, tzinfo=UTC) + timedelta(seconds=seconds)


def context(prices: dict[str, list[tuple[datetime, str]]], *, policy: d.Policy = POLICY) -> d.Context:
    """prices: symbol -> [(timestamp, index price)]; the mark price is the index price + 1."""
    series = {symbol: [(t, Decimal(p) + 1, Decimal(p)) for t, p in rows] for symbol, rows in prices.items()}
    return d.Context(
        policy, d.Prices(series, reference=policy.price_reference, max_age=policy.price_max_age), MARKETS, DECIMALS
    )


def fill(
    trade_id=1,
    *,
    side="Ask",
    price="100",
    quantity="1",
    fee="0",
    fee_symbol="USDC",
    symbol="SOL_USDC_PERP",
    timestamp=None,
    system_order_type=None,
):
    return SimpleNamespace(
        trade_id=trade_id,
        side=side,
        price=Decimal(price),
        quantity=Decimal(quantity),
        fee=Decimal(fee),
        fee_symbol=fee_symbol,
        symbol=symbol,
        timestamp=timestamp or at("11:00"),
        system_order_type=system_order_type,
    )


def withdrawal(id=1, *, symbol="USDC", quantity="100", fee="1", status="failed", created_at=None):
    return SimpleNamespace(
        id=id,
        symbol=symbol,
        quantity=Decimal(quantity),
        fee=Decimal(fee),
        status=status,
        created_at=created_at or at("09:00"),
    )


def deposit(
    id=1, *, symbol="USDC", quantity="100", source="internal", status="confirmed", created_at=None, withdrawal_id=None
):
    return SimpleNamespace(
        id=id,
        symbol=symbol,
        quantity=Decimal(quantity),
        source=source,
        status=status,
        created_at=created_at or at("13:00"),
        withdrawal_id=withdrawal_id,
    )


def position(net_quantity: str, snapshot_at: datetime, symbol="SOL_USDC_PERP"):
    return SimpleNamespace(
        symbol=symbol, net_quantity=Decimal(net_quantity), entry_price=Decimal(100), snapshot_at=snapshot_at
    )


def balance(total: str, snapshot_at: datetime, symbol="USDT"):
    return SimpleNamespace(symbol=symbol, total=Decimal(total), snapshot_at=snapshot_at)


def entry(quantity: str, timestamp: datetime, symbol="USDT", id=1):
    return SimpleNamespace(id=id, symbol=symbol, quantity=Decimal(quantity), timestamp=timestamp, kind="trade")


def ledger(**rows) -> d.UserLedger:
    return d.UserLedger(user_id=7, **rows)
