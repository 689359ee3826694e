"""Claims: what claimants say happened, with their attachments, verification links and the e-mail
sent about them; and the API's callers."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from exchange.models import amount_field

from .incidents import Incident, Item


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
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The staff member working on it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["incident", "user_id"], name="claim_incident_user")]
        constraints = [
            models.CheckConstraint(
                condition=Q(claimed_amount__isnull=True) | Q(claimed_amount__gte=0), name="claim_amount_not_negative"
            ),
        ]
        permissions = [("review_claim", "Take claims into review"), ("reject_claim", "Reject claims")]

    def __str__(self):
        return f"claim {self.number} of {self.user_id}"

    @property
    def number(self) -> str:
        """What the claimant quotes to support (staff search for it as typed)."""
        return f"CD-{self.pk}"

    def reference_key(self) -> tuple:
        """What the claim points at; a second claim with the same key is merged into the first."""
        return (
            self.kind,
            self.trade_id,
            self.order_id,
            self.withdrawal_id,
            self.transaction_hash,
            self.market_symbol,
            self.approximate_time,
        )


class ClaimItem(models.Model):
    """A claim points at an item. Several claims may point at one item; it is still owed once."""

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE)
    item = models.ForeignKey(Item, on_delete=models.PROTECT)

    class Meta:
        verbose_name = "item of the claim"
        verbose_name_plural = "items of the claim"
        constraints = [models.UniqueConstraint(fields=["claim", "item"], name="claim_item_once")]

    def __str__(self):
        return f"item #{self.item_id}"


# A stored file is named from the type its content was found to be, never from the name the
# client sent (a PNG signature followed by HTML, named x.html, is stored as .png).
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "application/pdf": ".pdf"}


def attachment_path(attachment: "ClaimAttachment", filename: str) -> str:
    return f"claims/{attachment.claim.public_id}/{uuid.uuid4().hex}{EXTENSIONS[attachment.content_type]}"


class ClaimAttachment(models.Model):
    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path)
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True, help_text="Information the claimant added with it.")

    def __str__(self):
        return self.original_name

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


class ClaimSubmission(models.Model):
    """A claim typed into the web form, kept until a task has checked its account and e-mail.

    The form answers "check your e-mail" after the same work whether or not they match the
    exchange's records (so it tells nobody which accounts or addresses exist); only the task
    files the claim, or discards the submission and its files. What was typed is emptied once
    the submission is handled."""

    class Status(models.TextChoices):
        PENDING = "pending"
        FILED = "filed"
        DISCARDED = "discarded"

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="+")
    data = models.JSONField(default=dict)
    language = models.CharField(max_length=8)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    claim = models.ForeignKey("Claim", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="submission_pending")]


class ClaimVerification(models.Model):
    """A one-time, expiring link sent to the e-mail address on file."""

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="verifications")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


def outgoing_message_id() -> str:
    """A Message-ID for a message we send (without brackets): a reply to it names it, and the
    intake finds the claim it was about (email-intake.md, "reply")."""
    domain = settings.SUPPORT_EMAIL.rpartition("@")[2] or "claimdesk.invalid"
    return f"{uuid.uuid4().hex}@{domain}"


class Notification(models.Model):
    """One e-mail. Its key is unique, so an event is never mailed twice, however often asked.

    An answer to a claimant's e-mail threads under it (In-Reply-To, References) and comes from
    SUPPORT_EMAIL; those values come from the message and are made header-safe when stored and
    again when the e-mail is built."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32)
    claim = models.ForeignKey(Claim, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    user_id = models.BigIntegerField(
        null=True, blank=True, help_text="None: an answer to an address with no account (email-intake.md, no_account)."
    )
    to = models.EmailField(max_length=320)
    language = models.CharField(max_length=8)
    context = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    message_id = models.CharField(
        max_length=255, default=outgoing_message_id, help_text="Its Message-ID, without brackets."
    )
    in_reply_to = models.CharField(max_length=998, blank=True, help_text="The Message-ID it answers.")
    references = models.TextField(blank=True, help_text="Message-IDs of the thread, blank-separated.")
    subject_suffix = models.CharField(max_length=255, blank=True)
    from_email = models.CharField(max_length=320, blank=True, help_text="Blank: DEFAULT_FROM_EMAIL.")

    class Meta:
        # A reply names the message it answers: the intake finds the claim through this index.
        indexes = [models.Index(fields=["message_id"], name="notification_message_id")]


class ApiClient(models.Model):
    """A caller of the REST API: the exchange's front end or a staff tool, with its scopes."""

    class Scope(models.TextChoices):
        CLAIMS = "claims", "file and read claims for the user it has logged in"
        STAFF = "staff", "read every claim, incident and item"

    name = models.CharField(max_length=100, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_clients",
        help_text="A staff client acting for this person: approvals and payouts through "
        "the API are theirs, with their roles.",
    )
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
