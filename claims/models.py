"""Incidents, and what the engine finds for them: items owed, findings for staff, detection runs."""

import uuid
from decimal import Decimal
from pathlib import Path

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

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



class ClaimKind(models.TextChoices):
    LIQUIDATION = "liquidation", _("A liquidation")
    BAD_FILL = "bad_fill", _("A trade filled at a bad price")
    WRONG_WITHDRAWAL = "wrong_withdrawal", _("A withdrawal that failed or came back wrong")
    POSITION_ERROR = "position_error", _("A position that changed by itself")
    MISSING_FUNDS = "missing_funds", _("Funds missing from my balance")
    OTHER = "other", _("Something else")


class Claim(models.Model):
    """What a claimant says happened to them, and what became of it."""

    class Channel(models.TextChoices):
        WEB = "web"
        API = "api"
        EMAIL = "email"
        STAFF = "staff"

    class Status(models.TextChoices):
        UNVERIFIED = "unverified", _("waiting for you to confirm your e-mail address")
        RECEIVED = "received", _("received")
        MATCHED = "matched", _("matched to what we found")
        NO_LOSS = "no_loss", _("no loss found")
        UNMATCHED = "unmatched", _("being reviewed by our staff")
        IN_REVIEW = "in_review", _("in review")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        PAID = "paid", _("paid")
        MERGED = "merged", _("merged into your earlier claim")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="claims")
    user_id = models.BigIntegerField(help_text="The claimant's account (userId).")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    kind = models.CharField(max_length=32, choices=ClaimKind.choices)
    description = models.TextField(blank=True, help_text="The claimant's own words.")
    trade_id = models.BigIntegerField(null=True, blank=True)
    order_id = models.CharField(max_length=64, blank=True)
    withdrawal_id = models.BigIntegerField(null=True, blank=True)
    transaction_hash = models.CharField(max_length=200, blank=True)
    market_symbol = models.CharField(max_length=64, blank=True)
    approximate_time = models.DateTimeField(null=True, blank=True)
    claimed_amount = amount_field(null=True, blank=True)
    claimed_asset = models.CharField(max_length=32, blank=True)
    language = models.CharField(max_length=8, default="en")
    status = models.CharField(max_length=16, choices=Status.choices)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged")
    items = models.ManyToManyField(Item, through="ClaimItem", related_name="claims", blank=True)
    staff_note = models.TextField(blank=True, help_text="What matching found, for staff.")
    candidate_events = models.JSONField(default=list, blank=True)
    no_loss_details = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["incident", "user_id"], name="claim_incident_user")]
        constraints = [
            models.CheckConstraint(condition=Q(claimed_amount__isnull=True) | Q(claimed_amount__gte=0),
                                   name="claim_amount_not_negative"),
        ]

    def __str__(self):
        return f"claim #{self.pk} of {self.user_id}"

    def reference_key(self) -> tuple:
        """What the claim points at; a second claim with the same key is merged into the first."""
        return (self.kind, self.trade_id, self.order_id, self.withdrawal_id, self.transaction_hash,
                self.market_symbol, self.approximate_time)


class ClaimItem(models.Model):
    """A claim points at an item. Several claims may point at one item; it is still owed once."""

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE)
    item = models.ForeignKey(Item, on_delete=models.PROTECT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["claim", "item"], name="claim_item_once")]


class ClaimTransition(models.Model):
    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="transitions")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    @property
    def to_status_label(self) -> str:
        return Claim.Status(self.to_status).label


def attachment_path(attachment: "ClaimAttachment", filename: str) -> str:
    return f"claims/{attachment.claim.public_id}/{uuid.uuid4().hex}{Path(filename).suffix.lower()}"


class ClaimAttachment(models.Model):
    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path)
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True, help_text="Information the claimant added with it.")


class ClaimVerification(models.Model):
    """A one-time, expiring link sent to the e-mail address on file."""

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="verifications")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Notification(models.Model):
    """One e-mail. Its key is unique, so an event is never mailed twice, however often asked."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32)
    claim = models.ForeignKey(Claim, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    user_id = models.BigIntegerField()
    to = models.EmailField(max_length=320)
    language = models.CharField(max_length=8)
    context = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class ApiClient(models.Model):
    """A caller of the REST API: the exchange's front end or a staff tool, with its scopes."""

    class Scope(models.TextChoices):
        CLAIMS = "claims", "file and read claims for the user it has logged in"
        STAFF = "staff", "read every claim, incident and item"

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name

    # DRF's permission checks ask the authenticated "user" these.
    is_authenticated = True

    def has_scope(self, scope: str) -> bool:
        return self.is_active and scope in self.scopes
