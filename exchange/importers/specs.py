"""What each file of a bundle holds: its columns, their parsers, its identity."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models

from exchange import models as m

from .values import (
    parse_asset_decimals,
    parse_bool,
    parse_decimal,
    parse_instant,
    parse_int,
    parse_positive_decimal,
    parse_str,
    parse_str_or_int,
)


@dataclass(frozen=True)
class Column:
    key: str  # the JSON key
    name: str  # the model field
    parse: Callable[[Any], Any]
    required: bool = True
    choices: frozenset[str] | None = None
    ref: str | None = None  # the set of known values it must belong to: users, assets, markets, perps


@dataclass(frozen=True)
class FileSpec:
    name: str
    model: type[models.Model]
    columns: tuple[Column, ...]
    identity: tuple[str, ...]
    required: bool = False

    @property
    def filename(self) -> str:
        return f"{self.name}.jsonl"


def _choices(choices: type[models.TextChoices]) -> frozenset[str]:
    return frozenset(choices.values)


C = Column
SPECS: tuple[FileSpec, ...] = (
    # Order matters: assets, markets and accounts are known before the files that name them.
    FileSpec(
        "assets",
        m.Asset,
        (C("symbol", "symbol", parse_str), C("decimals", "decimals", parse_asset_decimals)),
        identity=("symbol",),
        required=True,
    ),
    FileSpec(
        "markets",
        m.Market,
        (
            C("symbol", "symbol", parse_str),
            C("baseSymbol", "base_symbol", parse_str, ref="assets"),
            C("quoteSymbol", "quote_symbol", parse_str, ref="assets"),
            C("marketType", "market_type", parse_str, choices=_choices(m.Market.Type)),
        ),
        identity=("symbol",),
        required=True,
    ),
    FileSpec(
        "accounts",
        m.Account,
        (
            C("userId", "user_id", parse_int),
            C("email", "email", parse_str),
            C("createdAt", "created_at", parse_instant),
            C("displayName", "display_name", parse_str, required=False),
            C("locale", "locale", parse_str, required=False),
        ),
        identity=("user_id",),
        required=True,
    ),
    FileSpec(
        "fills",
        m.Fill,
        (
            C("userId", "user_id", parse_int, ref="users"),
            C("tradeId", "trade_id", parse_int),
            C("side", "side", parse_str, choices=_choices(m.Side)),
            C("orderId", "order_id", parse_str_or_int),
            C("symbol", "symbol", parse_str, ref="markets"),
            C("price", "price", parse_decimal),
            C("quantity", "quantity", parse_positive_decimal),
            C("fee", "fee", parse_decimal),
            C("feeSymbol", "fee_symbol", parse_str, ref="assets"),
            C("isMaker", "is_maker", parse_bool),
            C("timestamp", "timestamp", parse_instant),
            C("clientId", "client_id", parse_str_or_int, required=False),
            C("systemOrderType", "system_order_type", parse_str, required=False, choices=_choices(m.SystemOrderType)),
        ),
        identity=("user_id", "trade_id", "side"),
    ),
    FileSpec(
        "withdrawals",
        m.Withdrawal,
        (
            C("id", "id", parse_int),
            C("userId", "user_id", parse_int, ref="users"),
            C("symbol", "symbol", parse_str, ref="assets"),
            C("quantity", "quantity", parse_decimal),
            C("fee", "fee", parse_decimal),
            C("status", "status", parse_str, choices=_choices(m.Withdrawal.Status)),
            C("blockchain", "blockchain", parse_str),
            C("toAddress", "to_address", parse_str),
            C("createdAt", "created_at", parse_instant),
            C("isInternal", "is_internal", parse_bool),
            C("transactionHash", "transaction_hash", parse_str, required=False),
        ),
        identity=("id",),
    ),
    FileSpec(
        "deposits",
        m.Deposit,
        (
            C("id", "id", parse_int),
            C("userId", "user_id", parse_int, ref="users"),
            C("symbol", "symbol", parse_str, ref="assets"),
            C("quantity", "quantity", parse_decimal),
            C("source", "source", parse_str, choices=_choices(m.Deposit.Source)),
            C("status", "status", parse_str, choices=_choices(m.Deposit.Status)),
            C("createdAt", "created_at", parse_instant),
            C("transactionHash", "transaction_hash", parse_str, required=False),
            C("withdrawalId", "withdrawal_id", parse_int, required=False),
        ),
        identity=("id",),
    ),
    FileSpec(
        "ledger",
        m.JournalEntry,
        (
            C("id", "id", parse_int),
            C("userId", "user_id", parse_int, ref="users"),
            C("symbol", "symbol", parse_str, ref="assets"),
            C("quantity", "quantity", parse_decimal),
            C("kind", "kind", parse_str, choices=_choices(m.JournalEntry.Kind)),
            C("timestamp", "timestamp", parse_instant),
            C("reference", "reference", parse_str, required=False),
        ),
        identity=("id",),
    ),
    FileSpec(
        "balance_snapshots",
        m.BalanceSnapshot,
        (
            C("userId", "user_id", parse_int, ref="users"),
            C("symbol", "symbol", parse_str, ref="assets"),
            C("total", "total", parse_decimal),
            C("snapshotAt", "snapshot_at", parse_instant),
        ),
        identity=("user_id", "symbol", "snapshot_at"),
    ),
    FileSpec(
        "position_snapshots",
        m.PositionSnapshot,
        (
            C("userId", "user_id", parse_int, ref="users"),
            C("symbol", "symbol", parse_str, ref="perps"),
            C("netQuantity", "net_quantity", parse_decimal),
            C("entryPrice", "entry_price", parse_decimal),
            C("snapshotAt", "snapshot_at", parse_instant),
        ),
        identity=("user_id", "symbol", "snapshot_at"),
    ),
    FileSpec(
        "mark_prices",
        m.MarkPrice,
        (
            C("symbol", "symbol", parse_str, ref="markets"),
            C("markPrice", "mark_price", parse_decimal),
            C("indexPrice", "index_price", parse_decimal),
            C("timestamp", "timestamp", parse_instant),
        ),
        identity=("symbol", "timestamp"),
    ),
)
SPECS_BY_FILENAME = {spec.filename: spec for spec in SPECS}

REF_DESCRIPTIONS = {
    "users": "userId (not in accounts.jsonl nor imported before)",
    "assets": "asset symbol (not in assets.jsonl nor imported before)",
    "markets": "market symbol (not in markets.jsonl nor imported before)",
    "perps": "PERP market symbol (position snapshots are of PERP markets only)",
}


class KnownValues:
    """The ids other files may name: what the database holds plus what this bundle adds."""

    def __init__(self):
        self.sets: dict[str, set] = {
            "users": set(m.Account.objects.values_list("user_id", flat=True)),
            "assets": set(m.Asset.objects.values_list("symbol", flat=True)),
            "markets": set(m.Market.objects.values_list("symbol", flat=True)),
            "perps": set(m.Market.objects.filter(market_type=m.Market.Type.PERP).values_list("symbol", flat=True)),
        }

    def learn(self, spec: FileSpec, row: dict[str, Any]) -> None:
        if spec.name == "accounts":
            self.sets["users"].add(row["user_id"])
        elif spec.name == "assets":
            self.sets["assets"].add(row["symbol"])
        elif spec.name == "markets":
            self.sets["markets"].add(row["symbol"])
            if row["market_type"] == m.Market.Type.PERP:
                self.sets["perps"].add(row["symbol"])
