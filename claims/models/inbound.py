"""E-mail received (email-intake.md): every message kept exactly as it came, with the one outcome
it was given and what was read from it.

The raw bytes live in the database (a BinaryField) rather than in file storage: a message and
its record are written in one transaction, so there is never a record without its bytes or a
file without its record, backups hold both, and the SHA-256 beside them proves they are intact.
ESPs refuse messages over 25-35 MB, which PostgreSQL's bytea holds without trouble; lists and
exports never read the column (selectors defer it).

Everything else on the row is derived from the raw bytes by the intake task and may be derived
again (staff can parse an `unparseable_kept` message again after a fix); the bytes, their
checksum and how they came are never changed (on PostgreSQL a trigger refuses it, migration 0010).
Attachments are listed (decoded name, content type, size, SHA-256), not copied: their content is
in the raw bytes, and the files a claim shows are copied to the claim's own attachments.
"""

from django.db import models
from django.utils import timezone

from .claims import Claim
from .incidents import Incident


class InboundMessage(models.Model):
    class Source(models.TextChoices):
        WEBHOOK = "webhook"
        MAILBOX = "mailbox"

    class Outcome(models.TextChoices):
        # In the order they are decided: the first that applies wins.
        DUPLICATE = "duplicate"
        IGNORED = "ignored"
        UNPARSEABLE_KEPT = "unparseable_kept"
        REPLY = "reply"
        NEW_CLAIM = "new_claim"
        UNVERIFIED = "unverified"
        NO_ACCOUNT = "no_account"

    # --- as received: never changed ---
    raw = models.BinaryField(help_text="The message exactly as received.")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    source = models.CharField(max_length=8, choices=Source.choices)
    esp = models.CharField(max_length=32, blank=True, help_text="The ESP whose webhook posted it.")
    mailbox = models.TextField(blank=True, help_text="The mbox, Maildir or folder it was imported from.")
    place = models.TextField(
        blank=True,
        help_text="Where in the mailbox: a file name, a Maildir key, or an mbox "
        "message's position and SHA-256; the ESP's event id.",
    )
    # SHA-256 of (source, mailbox or ESP, place): importing the same mailbox again receives nothing again.
    place_key = models.CharField(max_length=64, null=True, blank=True)
    envelope_sender = models.TextField(
        null=True, blank=True, help_text="The envelope sender the ESP reported (empty: a bounce); null when not told."
    )
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.PROTECT, related_name="inbound_messages"
    )
    received_at = models.DateTimeField(default=timezone.now)
    # SHA-256 of "id:" + the normalised Message-ID, or of "raw:" + the raw bytes' SHA-256 when it has
    # none: how duplicates and replies find earlier messages. Taken from the header section when the
    # message is stored, so that a message can be looked up before it is parsed. Message-IDs have no
    # length limit, so the index is on this digest, not on the text (a btree entry has a size cap).
    message_key = models.CharField(max_length=64)

    # --- what parsing found ---
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times the intake task took it.")
    parsed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, null=True, blank=True)
    # Set on each message that is not a duplicate: unique, so two copies decided at once cannot
    # both become the original (the second fails, is retried and finds the first).
    original_key = models.CharField(max_length=64, null=True, blank=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    message_id = models.TextField(null=True, blank=True, help_text="Normalised: without angle brackets.")
    thread_ids = models.JSONField(default=list, blank=True, help_text="In-Reply-To, then References.")
    from_address = models.TextField(blank=True)
    from_name = models.TextField(blank=True)
    subject = models.TextField(blank=True)
    is_verified = models.BooleanField(null=True, help_text="Our receiving server's DMARC pass for From's domain.")
    ignored_reason = models.CharField(max_length=16, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True, help_text="The account the outcome concerns.")
    claim = models.ForeignKey(Claim, null=True, blank=True, on_delete=models.PROTECT, related_name="inbound_messages")
    text = models.TextField(
        blank=True, help_text="The visible new text, forwarded text included; never rendered unescaped."
    )
    extracted = models.JSONField(default=dict, blank=True, help_text="What the text states, as the export writes it.")
    attachments = models.JSONField(default=list, blank=True, help_text="Decoded names, content types, sizes.")
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-id"]
        # Declared here rather than with db_index/unique on the fields: on PostgreSQL those add a
        # second, pattern-matching index to each text column, which digests never need and every
        # insert would maintain.
        indexes = [
            models.Index(fields=["outcome", "received_at"], name="inbound_outcome_received"),
            models.Index(fields=["message_key"], name="inbound_message_key"),
            models.Index(fields=["sha256"], name="inbound_sha256"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["place_key"], name="inbound_place_once"),
            models.UniqueConstraint(fields=["original_key"], name="inbound_one_original"),
        ]
        permissions = [("parse_again_inboundmessage", "Parse an unparseable message again")]

    def __str__(self):
        return f"message #{self.pk} ({self.outcome or 'not parsed yet'})"
