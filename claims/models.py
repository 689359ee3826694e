"""Incidents, and what the engine finds for them: items owed, findings for staff, detection runs."""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from exchange.models import amount_field

SETTING_FIELDS = (
    "title", "window_start", "trading_resumed", "window_end", "evaluation_end", "price_reference",
    "price_max_age", "bad_fill_tolerance_bps", "auto_approve_limit", "dual_approval_limit", "claims_close",
)
# The settings that change what detection computes (title and claims_close do not).
DETECTION_SETTINGS = (
    "window_start", "trading_resumed", "window_end", "evaluation_end", "price_reference", "price_max_age",
    "bad_fill_tolerance_bps", "auto_approve_limit", "dual_approval_limit",
)


class Incident(models.Model):
    """One incident and every setting of the compensation policy's table."""

    class PriceReference(models.TextChoices):
        INDEX = "index"
        MARK = "mark"

    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    window_start = models.DateTimeField(help_text="The exchange went into maintenance.")
    trading_resumed = models.DateTimeField(help_text="Full trading resumed.")
    window_end = models.DateTimeField(help_text="Last instant of the window.")
    evaluation_end = models.DateTimeField(help_text="Horizon for open position errors.")
    price_reference = models.CharField(max_length=8, choices=PriceReference.choices, default=PriceReference.INDEX)
    price_max_age = models.PositiveIntegerField(help_text="Seconds; a price exactly this old is still usable.")
    bad_fill_tolerance_bps = models.PositiveIntegerField()
    auto_approve_limit = amount_field(help_text="USDC value approved by policy alone.")
    dual_approval_limit = amount_field(help_text="USDC value above which two staff approve.")
    claims_close = models.DateTimeField()
    settings_version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(window_start__lte=F("trading_resumed"))
                & Q(trading_resumed__lte=F("window_end"))
                & Q(window_start__lte=F("evaluation_end")),
                name="incident_window_in_order",
            ),
            models.CheckConstraint(
                condition=Q(auto_approve_limit__gte=0) & Q(dual_approval_limit__gte=F("auto_approve_limit")),
                name="incident_approval_limits_in_order",
            ),
        ]

    def __str__(self):
        return self.slug

    def settings_dict(self) -> dict[str, str]:
        """The settings as JSON-ready text, for the change log and item inputs."""
        return {name: _as_text(getattr(self, name)) for name in SETTING_FIELDS}


def _as_text(value) -> str:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"  # 100 and 100.000000000000000000 are the same setting
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class IncidentSettingsChange(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="settings_changes")
    changed_at = models.DateTimeField(auto_now_add=True)
    changed_by = models.CharField(max_length=150)
    before = models.JSONField()
    after = models.JSONField()
    redetection = models.ForeignKey("DetectionRun", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")

    class Meta:
        ordering = ["-changed_at"]


class DetectionRun(models.Model):
    """One detection over one user or all users of an incident, done in chunks by workers."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="detection_runs")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.CharField(max_length=150)
    reason = models.CharField(max_length=200, blank=True)
    settings_version = models.PositiveIntegerField()
    total_users = models.PositiveIntegerField()
    done_users = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(done_users__lte=F("total_users")),
                                              name="detection_run_progress_bounded")]

    def __str__(self):
        return f"detection #{self.pk} of {self.incident_id} ({self.done_users}/{self.total_users})"


class DetectionChunk(models.Model):
    """A slice of a run's users. Done exactly once: a conditional UPDATE claims its completion."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"

    run = models.ForeignKey(DetectionRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    user_ids = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="detection_chunk_number")]


class ItemKind(models.TextChoices):
    LIQUIDATION = "liquidation"
    BAD_FILL = "bad_fill"
    WRONG_WITHDRAWAL = "wrong_withdrawal"
    POSITION_ERROR = "position_error"
    MISSING_FUNDS = "missing_funds"


class Item(models.Model):
    """What is owed for one erroneous event in one asset (the policy's "Items")."""

    class Status(models.TextChoices):
        COMPUTED = "computed", "computed (awaiting a decision)"
        NEEDS_REVIEW = "needs_review", "needs review"
        APPROVED = "approved"
        REJECTED = "rejected"
        PAID = "paid"

    class Approval(models.TextChoices):
        POLICY = "policy", "approved by policy"
        ONE = "one", "one staff approval"
        TWO = "two", "two staff approvals"

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="items")
    user_id = models.BigIntegerField()
    kind = models.CharField(max_length=32, choices=ItemKind.choices)
    reference = models.CharField(max_length=200)
    asset = models.CharField(max_length=32)
    amount = amount_field(null=True, blank=True, help_text="Empty while the item needs review.")
    status = models.CharField(max_length=16, choices=Status.choices)
    approval = models.CharField(max_length=8, choices=Approval.choices)
    review_reason = models.TextField(blank=True)
    formula = models.CharField(max_length=100)
    inputs = models.JSONField(help_text="Everything the amount was computed from, to recompute it by hand.")
    event_at = models.DateTimeField(null=True, blank=True)
    usdc_value = amount_field(null=True, blank=True, help_text="At the event time, in cents; empty if unknown.")
    corrective_action = models.TextField(blank=True)
    detection_run = models.ForeignKey(DetectionRun, null=True, on_delete=models.SET_NULL, related_name="+")
    # A decided item is never changed by detection; a different result waits here for staff.
    flagged_at = models.DateTimeField(null=True, blank=True)
    flagged_amount = amount_field(null=True, blank=True)
    flag_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "user_id", "kind", "reference", "asset"],
                                    name="item_identity"),
            models.CheckConstraint(condition=Q(amount__isnull=True) | Q(amount__gt=0), name="item_amount_positive"),
            models.CheckConstraint(
                condition=Q(status="needs_review", amount__isnull=True) | (~Q(status="needs_review")
                                                                            & Q(amount__isnull=False)),
                name="item_amount_unless_needs_review",
            ),
        ]
        indexes = [models.Index(fields=["incident", "user_id"], name="item_incident_user")]

    def __str__(self):
        return f"{self.user_id} {self.kind} {self.reference} {self.asset}"

    @property
    def is_decided(self) -> bool:
        return self.status in (self.Status.APPROVED, self.Status.REJECTED, self.Status.PAID)


class Finding(models.Model):
    """Something staff must see that is not owed: a balance surplus, a position to correct."""

    class Kind(models.TextChoices):
        BALANCE_SURPLUS = "balance_surplus"
        POSITION_CORRECTION = "position_correction"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="findings")
    user_id = models.BigIntegerField()
    kind = models.CharField(max_length=32, choices=Kind.choices)
    reference = models.CharField(max_length=200)
    asset = models.CharField(max_length=32)
    quantity = amount_field(help_text="The surplus, or the position's difference (after minus expected).")
    description = models.TextField()
    inputs = models.JSONField()
    detection_run = models.ForeignKey(DetectionRun, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["incident", "user_id", "kind", "reference", "asset"],
                                               name="finding_identity")]

    def __str__(self):
        return f"{self.user_id} {self.kind} {self.reference}"


class ItemEvent(models.Model):
    """The audit trail of an item: created, updated by detection, flagged, approved, ..."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=32)
    old_amount = amount_field(null=True, blank=True)
    new_amount = amount_field(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

