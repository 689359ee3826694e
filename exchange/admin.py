"""The imported ledger in the admin: to look at, never to edit (it is append-only)."""

from django.contrib import admin

from . import models as m


class ViewOnly:
    """Shown in the admin, never added, edited or deleted there (for model admins and inlines)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ViewOnlyInline(ViewOnly, admin.TabularInline):
    extra = 0
    can_delete = False


class ReadOnlyAdmin(ViewOnly, admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # counting million-row tables on every page view is slow


class ImportFileInline(ViewOnlyInline):
    model = m.ImportFile
    fields = ["name", "member", "lines_read", "inserted", "already_present", "skipped_as_unchanged", "sha256"]
    readonly_fields = fields


@admin.register(m.ImportRun)
class ImportRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "started_at", "imported_by", "source", "status", "error_count"]
    list_filter = ["status"]
    inlines = [ImportFileInline]


@admin.register(m.Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["user_id", "email", "display_name", "locale", "created_at"]
    search_fields = ["=user_id", "email"]


@admin.register(m.Asset)
class AssetAdmin(ReadOnlyAdmin):
    list_display = ["symbol", "decimals"]


@admin.register(m.Market)
class MarketAdmin(ReadOnlyAdmin):
    list_display = ["symbol", "base_symbol", "quote_symbol", "market_type"]


@admin.register(m.Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = [
        "trade_id",
        "side",
        "user_id",
        "symbol",
        "price",
        "quantity",
        "fee",
        "fee_symbol",
        "system_order_type",
        "timestamp",
    ]
    list_filter = ["symbol", "side", "system_order_type"]
    search_fields = ["=user_id", "=trade_id", "order_id"]
    date_hierarchy = "timestamp"


@admin.register(m.Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = ["id", "user_id", "symbol", "quantity", "fee", "status", "created_at"]
    list_filter = ["status", "symbol"]
    search_fields = ["=id", "=user_id", "transaction_hash"]


@admin.register(m.Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = ["id", "user_id", "symbol", "quantity", "source", "status", "withdrawal_id", "created_at"]
    list_filter = ["source", "status", "symbol"]
    search_fields = ["=id", "=user_id", "=withdrawal_id"]


@admin.register(m.JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "user_id", "symbol", "quantity", "kind", "reference", "timestamp"]
    list_filter = ["kind", "symbol"]
    search_fields = ["=id", "=user_id", "reference"]


@admin.register(m.BalanceSnapshot)
class BalanceSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["user_id", "symbol", "total", "snapshot_at"]
    search_fields = ["=user_id"]


@admin.register(m.PositionSnapshot)
class PositionSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["user_id", "symbol", "net_quantity", "entry_price", "snapshot_at"]
    search_fields = ["=user_id"]


@admin.register(m.MarkPrice)
class MarkPriceAdmin(ReadOnlyAdmin):
    list_display = ["symbol", "timestamp", "mark_price", "index_price"]
    list_filter = ["symbol"]
