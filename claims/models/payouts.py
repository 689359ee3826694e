"""Payout batches and their lines: approved items grouped per (user, asset) for treasury, each
line paid at most once under its key (payouts.md)."""

from django.db import models
from django.db.models import Q

from exchange.models import amount_field

from .incidents import Incident, Item


class PayoutBatch(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="payout_batches")
    number = models.PositiveIntegerField(help_text="Counts from 1 per incident.")
    asset = models.CharField(max_length=32, blank=True, help_text="Only this asset's items, if set.")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "payout batches"
        constraints = [
            models.UniqueConstraint(fields=["incident", "number"], name="payout_batch_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="payout_batch_number_from_1"),
        ]
        permissions = [("run_reconciliation", "Reconcile payouts with the ledger")]

    def __str__(self):
        return f"{self.incident.slug} batch {self.number}"


class PayoutLine(models.Model):
    """What treasury pays one user in one asset, under an idempotency key paid at most once.

    `exported` and `paid` lines are live; a `failed` line holds its items until finance releases
    it. `paid` and `failed` are final."""

    class Status(models.TextChoices):
        EXPORTED = "exported"
        PAID = "paid"
        FAILED = "failed"
        RELEASED = "released"

    batch = models.ForeignKey(PayoutBatch, on_delete=models.PROTECT, related_name="lines")
    number = models.PositiveIntegerField()
    key = models.CharField(max_length=160, unique=True, help_text="{incident slug}.{batch}.{line}")
    user_id = models.BigIntegerField()
    asset = models.CharField(max_length=32)
    amount = amount_field()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.EXPORTED)
    transaction_id = models.CharField(max_length=200, blank=True, help_text="Treasury's own id of the payment.")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    released_by = models.CharField(max_length=150, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["batch_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "number"], name="payout_line_number"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_line_amount_positive"),
            models.CheckConstraint(
                condition=~Q(status="paid") | ~Q(transaction_id=""), name="payout_line_paid_has_transaction"
            ),
            models.CheckConstraint(
                condition=Q(status="exported") | Q(confirmed_at__isnull=False), name="payout_line_confirmed_when_final"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="payout_line_number_from_1"),
            # Releasing lets the items be paid again: who, when and why are never missing.
            models.CheckConstraint(
                condition=~Q(status="released")
                | (Q(released_at__isnull=False) & ~Q(released_by="") & ~Q(release_reason="")),
                name="payout_line_released_with_reason",
            ),
        ]
        indexes = [models.Index(fields=["user_id", "asset"], name="payout_line_user_asset")]
        permissions = [
            ("confirm_payoutline", "Record treasury's confirmations"),
            ("release_payoutline", "Release failed payout lines"),
        ]

    def __str__(self):
        return self.key


class PayoutLineItem(models.Model):
    """An item in a line, with the version and amount that were paid.

    `is_holding` is true while the line is live or failed; the partial unique index keeps an item
    in at most one such line, whatever two batches do at the same moment."""

    line = models.ForeignKey(PayoutLine, on_delete=models.PROTECT, related_name="entries")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="payout_entries")
    version = models.PositiveIntegerField()
    amount = amount_field()
    is_holding = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item"], condition=Q(is_holding=True), name="payout_item_one_live_line"),
            models.UniqueConstraint(fields=["line", "item"], name="payout_line_item_once"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_line_item_amount_positive"),
        ]

    def __str__(self):
        return f"item #{self.item_id}"


class PayoutConfirmation(models.Model):
    """One confirmation file from treasury, as recorded (the lines it changed are in the audit trail)."""

    file_name = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    recorded_by = models.CharField(max_length=150)
    recorded_at = models.DateTimeField(auto_now_add=True)
    rows = models.PositiveIntegerField()
    paid = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()
    unchanged = models.PositiveIntegerField()

    class Meta:
        ordering = ["-id"]
