"""The exchange's ledger, copied from export bundles (see the spec's export-bundle.md).

The copy is append-only: rows are only ever inserted by the importer, never edited
or deleted (the exchange corrects history with new lines). The querysets refuse
update() and delete(), save() refuses to change an existing row, and on PostgreSQL
a trigger refuses UPDATE and DELETE as well.

User ids and symbols are kept as the exchange's own values, without database foreign
keys: the importer checks every reference before anything is written, and a
per-row FK trigger would halve the speed of COPY on million-line files.
"""

from django.db import models
from django.db.models.functions import Lower


def amount_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=38, decimal_places=18, **kwargs)


class AppendOnlyError(Exception):
    pass


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are {self.model.append_only_what} and cannot be edited")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are {self.model.append_only_what} and cannot be deleted")


class AppendOnly(models.Model):
    """Rows that are only ever inserted: the querysets refuse update() and delete(), save() refuses
    to change a row, and on PostgreSQL a trigger refuses both too (the ledger's migration 0002,
    the audit trail's claims/migrations/0006)."""

    append_only_what = "append-only"

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are {self.append_only_what} and cannot be edited")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are {self.append_only_what} and cannot be deleted")


class LedgerRow(AppendOnly):
    append_only_what = "imported history"

    import_run = models.ForeignKey(
        "ImportRun", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", editable=False
    )

    class Meta:
        abstract = True


class ImportRun(models.Model):
    """One run of import_bundle: who ran it, when, on what, and what it wrote."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    imported_by = models.CharField(max_length=150)
    source = models.CharField(max_length=1000)
    status = models.CharField(max_length=16, choices=Status.choices)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.TextField(blank=True, help_text="The first errors found, one per line.")

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"import #{self.pk} of {self.source} ({self.status})"


class ImportFile(models.Model):
    run = models.ForeignKey(ImportRun, on_delete=models.PROTECT, related_name="files")
    name = models.CharField(max_length=100, help_text="The bundle file, e.g. fills.jsonl.")
    member = models.CharField(max_length=1000, help_text="Where it was read from, inside the bundle.")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the file's uncompressed content.")
    lines_read = models.PositiveBigIntegerField()
    inserted = models.PositiveBigIntegerField()
    already_present = models.PositiveBigIntegerField()
    skipped_as_unchanged = models.BooleanField(
        default=False, help_text="Same content as a file of an earlier successful import: not read again."
    )

    class Meta:
        indexes = [models.Index(fields=["name", "sha256"])]

    def __str__(self):
        return f"{self.name} of import #{self.run_id}"


class Account(LedgerRow):
    user_id = models.BigIntegerField(primary_key=True)
    email = models.EmailField(max_length=320)
    created_at = models.DateTimeField()
    display_name = models.CharField(max_length=200, blank=True, null=True)
    locale = models.CharField(max_length=35, blank=True, null=True)

    class Meta:
        # E-mail intake finds the account of a sender's address (selectors.accounts_with_email).
        indexes = [models.Index(Lower("email"), name="account_email_lower")]

    def __str__(self):
        return f"user {self.user_id}"


class Asset(LedgerRow):
    symbol = models.CharField(max_length=32, primary_key=True)
    decimals = models.PositiveSmallIntegerField()

    def __str__(self):
        return self.symbol


class Market(LedgerRow):
    class Type(models.TextChoices):
        SPOT = "SPOT"
        PERP = "PERP"

    symbol = models.CharField(max_length=64, primary_key=True)
    base_symbol = models.CharField(max_length=32)
    quote_symbol = models.CharField(max_length=32)
    market_type = models.CharField(max_length=8, choices=Type.choices)

    def __str__(self):
        return self.symbol


class Side(models.TextChoices):
    BID = "Bid"
    ASK = "Ask"


class SystemOrderType(models.TextChoices):
    LIQUIDATE_ON_BOOK = "LiquidatePositionOnBook"
    LIQUIDATE_ON_BACKSTOP = "LiquidatePositionOnBackstop"
    LIQUIDATE_ON_ADL = "LiquidatePositionOnAdl"
    COLLATERAL_CONVERSION = "CollateralConversion"
    FUTURE_EXPIRY = "FutureExpiry"
    ORDER_BOOK_CLOSED = "OrderBookClosed"


class Fill(LedgerRow):
    user_id = models.BigIntegerField()
    trade_id = models.BigIntegerField()
    side = models.CharField(max_length=3, choices=Side.choices)
    order_id = models.CharField(max_length=64)
    symbol = models.CharField(max_length=64)
    price = amount_field()
    quantity = amount_field()
    fee = amount_field()
    fee_symbol = models.CharField(max_length=32)
    is_maker = models.BooleanField()
    timestamp = models.DateTimeField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    system_order_type = models.CharField(max_length=32, choices=SystemOrderType.choices, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user_id", "trade_id", "side"], name="fill_identity"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="fill_quantity_positive"),
        ]
        indexes = [models.Index(fields=["user_id", "timestamp"], name="fill_user_time")]

    @property
    def is_liquidation(self) -> bool:
        return bool(self.system_order_type) and self.system_order_type.startswith("LiquidatePositionOn")

    def __str__(self):
        return f"fill:{self.trade_id}:{self.side}"


class Withdrawal(LedgerRow):
    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        RETURNED = "returned"

    id = models.BigIntegerField(primary_key=True)
    user_id = models.BigIntegerField()
    symbol = models.CharField(max_length=32)
    quantity = amount_field()
    fee = amount_field()
    status = models.CharField(max_length=16, choices=Status.choices)
    blockchain = models.CharField(max_length=64)
    to_address = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    is_internal = models.BooleanField()
    transaction_hash = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user_id", "created_at"], name="withdrawal_user_time")]

    def __str__(self):
        return f"withdrawal:{self.id}"


class Deposit(LedgerRow):
    class Source(models.TextChoices):
        BLOCKCHAIN = "blockchain"
        INTERNAL = "internal"

    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        FAILED = "failed"

    id = models.BigIntegerField(primary_key=True)
    user_id = models.BigIntegerField()
    symbol = models.CharField(max_length=32)
    quantity = amount_field()
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    created_at = models.DateTimeField()
    transaction_hash = models.CharField(max_length=200, null=True, blank=True)
    withdrawal_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user_id", "created_at"], name="deposit_user_time")]

    def __str__(self):
        return f"deposit:{self.id}"


class JournalEntry(LedgerRow):
    """One line of ledger.jsonl: a single change of one balance."""

    class Kind(models.TextChoices):
        TRADE = "trade"
        FEE = "fee"
        FUNDING = "funding"
        PNL = "pnl"
        DEPOSIT = "deposit"
        WITHDRAWAL = "withdrawal"
        INTEREST = "interest"
        LIQUIDATION = "liquidation"
        BORROW = "borrow"
        ADJUSTMENT = "adjustment"
        COMPENSATION = "compensation"

    id = models.BigIntegerField(primary_key=True)
    user_id = models.BigIntegerField()
    symbol = models.CharField(max_length=32)
    quantity = amount_field()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    timestamp = models.DateTimeField()
    reference = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        verbose_name_plural = "journal entries"
        indexes = [models.Index(fields=["user_id", "symbol", "timestamp"], name="journal_user_asset_time")]

    def __str__(self):
        return f"journal:{self.id}"


class BalanceSnapshot(LedgerRow):
    user_id = models.BigIntegerField()
    symbol = models.CharField(max_length=32)
    total = amount_field()
    snapshot_at = models.DateTimeField()

    class Meta:
        # The identity doubles as the index for "this user's balances between two instants".
        constraints = [
            models.UniqueConstraint(fields=["user_id", "symbol", "snapshot_at"], name="balance_snapshot_identity")
        ]


class PositionSnapshot(LedgerRow):
    user_id = models.BigIntegerField()
    symbol = models.CharField(max_length=64)
    net_quantity = amount_field()
    entry_price = amount_field()
    snapshot_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user_id", "symbol", "snapshot_at"], name="position_snapshot_identity")
        ]


class MarkPrice(LedgerRow):
    symbol = models.CharField(max_length=64)
    mark_price = amount_field()
    index_price = amount_field()
    timestamp = models.DateTimeField()

    class Meta:
        # Serves "latest price of a symbol at or before t" as a backward index scan.
        constraints = [models.UniqueConstraint(fields=["symbol", "timestamp"], name="mark_price_identity")]
