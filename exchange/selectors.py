"""Reads of the imported ledger. claims/ reads the ledger only through these."""

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db.models import QuerySet
from django.db.models.functions import Lower

from . import models as m

FILL_FIELDS = (
    "user_id",
    "trade_id",
    "side",
    "symbol",
    "price",
    "quantity",
    "fee",
    "fee_symbol",
    "timestamp",
    "system_order_type",
    "order_id",
)
WITHDRAWAL_FIELDS = ("id", "user_id", "symbol", "quantity", "fee", "status", "created_at", "transaction_hash")
DEPOSIT_FIELDS = ("id", "user_id", "symbol", "quantity", "source", "status", "created_at", "withdrawal_id")
JOURNAL_FIELDS = ("id", "user_id", "symbol", "quantity", "kind", "timestamp", "reference")
BALANCE_FIELDS = ("user_id", "symbol", "total", "snapshot_at")
POSITION_FIELDS = ("user_id", "symbol", "net_quantity", "entry_price", "snapshot_at")


def _by_user(queryset: QuerySet, fields: tuple[str, ...], user_ids: Iterable[int], order: tuple[str, ...]):
    rows = defaultdict(list)
    for row in queryset.filter(user_id__in=list(user_ids)).order_by("user_id", *order).values_list(*fields, named=True):
        rows[row.user_id].append(row)
    return rows


def ledger_rows_for_users(user_ids: Iterable[int]) -> dict[str, dict[int, list]]:
    """Every ledger row of these users, by kind and user: one query per kind, whatever the count."""
    user_ids = list(user_ids)
    return {
        "fills": _by_user(m.Fill.objects, FILL_FIELDS, user_ids, ("timestamp", "trade_id")),
        "withdrawals": _by_user(m.Withdrawal.objects, WITHDRAWAL_FIELDS, user_ids, ("created_at", "id")),
        "deposits": _by_user(m.Deposit.objects, DEPOSIT_FIELDS, user_ids, ("created_at", "id")),
        "journal": _by_user(m.JournalEntry.objects, JOURNAL_FIELDS, user_ids, ("timestamp", "id")),
        "balance_snapshots": _by_user(m.BalanceSnapshot.objects, BALANCE_FIELDS, user_ids, ("snapshot_at",)),
        "position_snapshots": _by_user(m.PositionSnapshot.objects, POSITION_FIELDS, user_ids, ("snapshot_at",)),
    }


def account_ids() -> list[int]:
    return list(m.Account.objects.order_by("user_id").values_list("user_id", flat=True))


def account_get(user_id: int) -> m.Account | None:
    return m.Account.objects.filter(user_id=user_id).first()


def accounts_get(user_ids: Iterable[int]) -> dict[int, m.Account]:
    return {account.user_id: account for account in m.Account.objects.filter(user_id__in=list(user_ids))}


def accounts_with_email(address: str) -> list[m.Account]:
    """The accounts whose address on file is `address`: the domain compared case-insensitively,
    the local part exactly (`User1@x` is not `user1@x`). Found through the index on lower(email)."""
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain:
        return []
    candidates = m.Account.objects.annotate(email_lower=Lower("email")).filter(email_lower=address.strip().lower())
    return [account for account in candidates.order_by("user_id") if account.email.strip().rpartition("@")[0] == local]


def markets_list() -> list[m.Market]:
    return list(m.Market.objects.order_by("symbol"))


def asset_decimals() -> dict[str, int]:
    return dict(m.Asset.objects.values_list("symbol", "decimals"))


def mark_prices_between(start: datetime, end: datetime) -> dict[str, list[tuple]]:
    """Each market's (timestamp, mark, index) rows with start <= timestamp <= end, in time order."""
    series = defaultdict(list)
    rows = (
        m.MarkPrice.objects.filter(timestamp__gte=start, timestamp__lte=end)
        .order_by("symbol", "timestamp")
        .values_list("symbol", "timestamp", "mark_price", "index_price")
    )
    for symbol, timestamp, mark, index in rows.iterator(chunk_size=10000):
        series[symbol].append((timestamp, mark, index))
    return series


def mark_price_latest(symbol: str, t: datetime) -> tuple | None:
    """The latest (timestamp, mark, index) of a market at or before t (a backward index scan)."""
    return (
        m.MarkPrice.objects.filter(symbol=symbol, timestamp__lte=t)
        .order_by("-timestamp")
        .values_list("timestamp", "mark_price", "index_price")
        .first()
    )


def latest_import_marker() -> tuple | None:
    """Identifies the ledger's current content: the latest successful import (id and when it ended)."""
    return (
        m.ImportRun.objects.filter(status=m.ImportRun.Status.SUCCEEDED)
        .order_by("-id")
        .values_list("id", "finished_at")
        .first()
    )


def compensation_entry_list(
    *, reference: str | None = None, reference_prefix: str | None = None, outside_prefix: str | None = None
) -> list:
    """The ledger's `compensation` entries (JOURNAL_FIELDS rows, by id): with exactly this
    reference, or one starting with `reference_prefix`, or none starting with `outside_prefix`
    (no reference at all included)."""
    entries = m.JournalEntry.objects.filter(kind=m.JournalEntry.Kind.COMPENSATION)
    if reference is not None:
        entries = entries.filter(reference=reference)
    if reference_prefix is not None:
        entries = entries.filter(reference__startswith=reference_prefix)
    if outside_prefix is not None:
        entries = entries.exclude(reference__startswith=outside_prefix)  # Django keeps the NULLs
    return list(entries.order_by("id").values_list(*JOURNAL_FIELDS, named=True))


def reference_rows() -> dict[str, list[dict]]:
    """The required files of a bundle (accounts, assets, markets) as the export writes them: what
    a bundle made from this ledger (e.g. one holding later journal entries) must carry."""
    return {
        "accounts.jsonl": [
            {
                "userId": a.user_id,
                "email": a.email,
                "createdAt": _naive(a.created_at),
                **({"locale": a.locale} if a.locale else {}),
            }
            for a in m.Account.objects.order_by("user_id")
        ],
        "assets.jsonl": [{"symbol": a.symbol, "decimals": a.decimals} for a in m.Asset.objects.order_by("symbol")],
        "markets.jsonl": [
            {
                "symbol": k.symbol,
                "baseSymbol": k.base_symbol,
                "quoteSymbol": k.quote_symbol,
                "marketType": k.market_type,
            }
            for k in m.Market.objects.order_by("symbol")
        ],
    }


def journal_id_max() -> int:
    return m.JournalEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _naive(t: datetime) -> str:
    """The export's timestamps: naive UTC ISO-8601 with milliseconds."""
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


# --- for staff: finding a claimant, and one user's events ---


def ledger_search(term: str) -> dict[str, list]:
    """What staff may type to find a claimant: user ids with that e-mail address, trades of that
    order id and withdrawals with that transaction hash."""
    term = term.strip()
    found = {"user_ids": [], "trade_ids": [], "withdrawal_ids": []}
    if "@" in term:
        found["user_ids"] = list(m.Account.objects.filter(email__iexact=term).values_list("user_id", flat=True))
        return found
    found["trade_ids"] = list(m.Fill.objects.filter(order_id=term).values_list("trade_id", flat=True)[:100])
    found["withdrawal_ids"] = list(
        m.Withdrawal.objects.filter(transaction_hash=term).values_list("id", flat=True)[:100]
    )
    return found


def user_events_between(user_id: int, start: datetime, end: datetime) -> list[dict]:
    """One user's ledger between two instants, as one timeline (oldest first): fills, withdrawals,
    deposits, journal entries and balance and position snapshots, each a dict of its fields with
    `event` (fill, withdrawal, deposit, journal, balance, position) and `at`."""
    sources = [
        ("fill", m.Fill.objects, "timestamp", FILL_FIELDS),
        ("withdrawal", m.Withdrawal.objects, "created_at", WITHDRAWAL_FIELDS),
        ("deposit", m.Deposit.objects, "created_at", DEPOSIT_FIELDS),
        ("journal", m.JournalEntry.objects, "timestamp", JOURNAL_FIELDS),
        ("balance", m.BalanceSnapshot.objects, "snapshot_at", BALANCE_FIELDS),
        ("position", m.PositionSnapshot.objects, "snapshot_at", POSITION_FIELDS),
    ]
    events = []
    for kind, rows, at, fields in sources:
        for row in rows.filter(user_id=user_id, **{f"{at}__gte": start, f"{at}__lte": end}).values(*fields):
            events.append({"event": kind, "at": row[at], **row})
    return sorted(events, key=lambda e: (e["at"], e["event"]))


def import_runs_recent(limit: int = 5) -> list[m.ImportRun]:
    return list(m.ImportRun.objects.order_by("-id")[:limit])
