"""Incidents, and what the engine finds for them: items owed (with their approvals), findings for
staff, detection runs."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from exchange.models import amount_field

SETTING_FIELDS = (
    "title",
    "window_start",
    "trading_resumed",
    "window_end",
    "evaluation_end",
    "price_reference",
    "price_max_age",
    "bad_fill_tolerance_bps",
    "auto_approve_limit",
    "dual_approval_limit",
    "claims_close",
)
# The settings that change what detection computes (title and claims_close do not).
DETECTION_SETTINGS = (
    "window_start",
    "trading_resumed",
    "window_end",
    "evaluation_end",
    "price_reference",
    "price_max_age",
    "bad_fill_tolerance_bps",
    "auto_approve_limit",
    "dual_approval_limit",
)
# A change of these takes effect only when a second approver confirms it (ApprovalLimitChange).
LIMIT_SETTINGS = ("auto_approve_limit", "dual_approval_limit")


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
    auto_approve_limit = amount_field(
        help_text="USDC value approved by policy alone. A change waits for a second approver's confirmation."
    )
    dual_approval_limit = amount_field(
        help_text="USDC value above which two staff approve. A change waits for a second approver's confirmation."
    )
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
        permissions = [("confirm_limits", "Confirm a change of approval limits proposed by someone else")]

    def __str__(self):
        return self.slug

    def is_open_for_claims(self, now) -> bool:
        return now <= self.claims_close

    def settings_dict(self) -> dict[str, str]:
        """The settings as JSON-ready text, for the audit trail and item inputs."""
        return {name: _as_text(getattr(self, name)) for name in SETTING_FIELDS}


def _as_text(value) -> str:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"  # 100 and 100.000000000000000000 are the same setting
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class ApprovalLimitChange(models.Model):
    """New approval limits proposed by one person; they apply only once a second `approver` confirms.

    One person alone could otherwise raise the auto-approval limit and let re-detection approve
    every item by policy."""

    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        SUPERSEDED = "superseded", "superseded by a later proposal"

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="limit_changes")
    auto_approve_limit = amount_field()
    dual_approval_limit = amount_field()
    proposed_by = models.CharField(max_length=150)
    proposed_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident"], condition=Q(status="pending"), name="limit_change_one_pending_per_incident"
            ),
            models.CheckConstraint(
                condition=Q(auto_approve_limit__gte=0) & Q(dual_approval_limit__gte=F("auto_approve_limit")),
                name="limit_change_limits_in_order",
            ),
        ]

    def __str__(self):
        return (
            f"limits of {self.incident} → auto {self.auto_approve_limit.normalize():f}, "
            f"dual {self.dual_approval_limit.normalize():f} ({self.status})"
        )


class DetectionRun(models.Model):
    """One detection over one user or all users of an incident, done in chunks by workers."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="detection_runs")
    started_at = models.DateTimeField(auto_now_add=True)
    progressed_at = models.DateTimeField(null=True, blank=True, help_text="When a chunk was last done.")
    finished_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.CharField(max_length=150)
    reason = models.CharField(max_length=200, blank=True)
    settings_version = models.PositiveIntegerField()
    total_users = models.PositiveIntegerField()
    done_users = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(done_users__lte=F("total_users")), name="detection_run_progress_bounded")
        ]

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
    OTHER = "other", "other (an amount staff set for a claim)"


DETECTED_KINDS = [kind for kind in ItemKind.values if kind != ItemKind.OTHER]


class Item(models.Model):
    """What is owed for one erroneous event in one asset (the policy's "Items").

    Approvals are given to one version of an item (payouts.md): setting its amount by hand,
    reopening it or sending it back makes a new version, and approvals of an older one never
    count again."""

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

    UNDECIDED = (Status.COMPUTED, Status.NEEDS_REVIEW)

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="items")
    user_id = models.BigIntegerField()
    kind = models.CharField(max_length=32, choices=ItemKind.choices)
    reference = models.CharField(max_length=200)
    asset = models.CharField(max_length=32)
    amount = amount_field(null=True, blank=True, help_text="Empty while the item needs review.")
    status = models.CharField(max_length=16, choices=Status.choices)
    approval = models.CharField(max_length=8, choices=Approval.choices, help_text="The tier: who approves it.")
    version = models.PositiveIntegerField(default=1)
    amount_set_by = models.CharField(
        max_length=150, blank=True, help_text="Who set this version's amount by hand (they may not approve it)."
    )
    review_reason = models.TextField(blank=True)
    formula = models.CharField(max_length=100)
    inputs = models.JSONField(help_text="Everything the amount was computed from, to recompute it by hand.")
    event_at = models.DateTimeField(null=True, blank=True)
    usdc_value = amount_field(
        null=True, blank=True, help_text="In USDC at the event time, rounded to cents; empty if unknown."
    )
    corrective_action = models.TextField(blank=True)
    detection_run = models.ForeignKey(DetectionRun, null=True, on_delete=models.SET_NULL, related_name="+")
    # A decided item is never changed by detection; a different result waits here for staff.
    flagged_at = models.DateTimeField(null=True, blank=True)
    flagged_amount = amount_field(null=True, blank=True)
    flag_reason = models.TextField(blank=True)
    flagged_values = models.JSONField(
        null=True,
        blank=True,
        help_text="What detection now computes besides the amount (inputs, formula, "
        "value), taken over when staff accept the recomputation.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "user_id", "kind", "reference", "asset"], name="item_identity"),
            models.CheckConstraint(condition=Q(amount__isnull=True) | Q(amount__gt=0), name="item_amount_positive"),
            # A needs-review item may be rejected without an amount ever being set (reopening it
            # makes it needs-review again: approvals.item_send_back).
            models.CheckConstraint(
                condition=Q(status="needs_review", amount__isnull=True)
                | Q(status="rejected")
                | (~Q(status="needs_review") & Q(amount__isnull=False)),
                name="item_amount_unless_needs_review",
            ),
            # Hand-set amounts and needs-review items always take two people.
            models.CheckConstraint(
                condition=Q(amount_set_by="") | Q(approval="two"), name="item_hand_set_amount_needs_two"
            ),
            models.CheckConstraint(
                condition=~Q(status="needs_review") | Q(approval="two"), name="item_needs_review_needs_two"
            ),
        ]
        indexes = [
            models.Index(fields=["incident", "user_id"], name="item_incident_user"),
            models.Index(fields=["user_id", "reference"], name="item_user_reference"),
            models.Index(fields=["incident", "status"], name="item_incident_status"),
            # The review queue: undecided items by tier and age (bench/queue_speed.py).
            models.Index(
                fields=["incident", "approval", "created_at"],
                condition=Q(status="computed"),
                name="item_queue_undecided",
            ),
        ]
        permissions = [
            ("approve_item", "Approve items"),
            ("reject_item", "Reject items"),
            ("set_item_amount", "Set an item's amount by hand"),
            ("send_back_item", "Send a decided item back"),
        ]

    def __str__(self):
        return f"{self.user_id} {self.kind} {self.reference} {self.asset}"

    @property
    def is_decided(self) -> bool:
        return self.status in (self.Status.APPROVED, self.Status.REJECTED, self.Status.PAID)

    @property
    def approvals_required(self) -> int:
        """People whose approval the current version needs (a policy-tier item that staff must
        approve, e.g. a flagged one sent back, needs one)."""
        return 2 if self.approval == self.Approval.TWO else 1


class ItemApproval(models.Model):
    """One person's approval of one version of an item.

    The database keeps a version from ever holding more approvals than the two-approval tier
    asks (`slot` is 1 or 2, unique per version) and one person from approving a version twice;
    the service holds the item's row lock while it checks the rest (tier, four eyes, roles)."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="approvals")
    version = models.PositiveIntegerField()
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approver_name = models.CharField(max_length=150, help_text="The actor as the audit trail records it.")
    is_approver_role = models.BooleanField(help_text="Held the approver role when approving.")
    slot = models.PositiveSmallIntegerField()
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item_id", "version", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["item", "version", "approver"], name="approval_once_per_person"),
            models.UniqueConstraint(fields=["item", "version", "slot"], name="approval_slot_once"),
            models.CheckConstraint(condition=Q(slot__gte=1) & Q(slot__lte=2), name="approval_at_most_two"),
        ]

    def __str__(self):
        return f"approval of item {self.item_id} v{self.version} by {self.approver_name}"


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
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "user_id", "kind", "reference", "asset"], name="finding_identity"
            )
        ]

    def __str__(self):
        return f"{self.user_id} {self.kind} {self.reference}"
