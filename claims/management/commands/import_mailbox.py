"""The backlog already in the support inbox (email-intake.md, "Two ways in"): an mbox file, a
Maildir or a folder of .eml files, through the same pipeline as the webhooks.

Each item is remembered by its place in the mailbox (a file's name, a Maildir key, an mbox
message's position and SHA-256), so a second run over the same mailbox receives nothing again;
the same bytes under another name are a new receipt (and so a `duplicate`). Messages are read one
at a time (an mbox through its table of contents, never whole) and stored in batches of bounded
size, so memory stays flat.
"""

import hashlib
import mailbox
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from celery import current_app
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from claims import services
from claims.management.operators import command_incident
from claims.models import InboundMessage, Incident

POLL_SECONDS = 0.5
Outcome = InboundMessage.Outcome


class Command(BaseCommand):
    help = "Receive the messages of an mbox, a Maildir or a folder of .eml files (in file-name order)."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--incident", default=None, help="the incident's slug (default: the one open for claims)")
        parser.add_argument(
            "--no-wait", action="store_true", help="do not wait for the workers to parse what was received"
        )

    def handle(self, *args, path, incident, no_wait, **options):
        incident = command_incident(incident) if incident else _open_incident()
        kind, total, items = mailbox_items(Path(path))
        where = str(Path(path).resolve())
        received, already, first_id = 0, 0, None
        bar = Bar(self.stdout, "receiving", total)
        for batch in batches(items):
            # One commit for a batch (each waits for the disk); its messages' parsing is enqueued then.
            with transaction.atomic():
                for place, raw in batch:
                    message, new = services.inbound_store(
                        raw=raw, source=InboundMessage.Source.MAILBOX, mailbox=where, place=place, incident=incident
                    )
                    received, already = received + new, already + (not new)
                    first_id = first_id or (message.id if new else None)
            bar.show(received + already)
        bar.end()
        self.stdout.write(f"{kind} {where}: {received} message(s) received, {already} received before.")
        if received:
            self._summarise(where, first_id, wait=not no_wait, count=received)

    def _summarise(self, where: str, first_id: int, *, wait: bool, count: int) -> None:
        run = InboundMessage.objects.filter(mailbox=where, id__gte=first_id)
        if wait and not current_app.conf.task_always_eager:
            bar = Bar(self.stdout, "parsing", count)
            left = run.filter(outcome__isnull=True).count()
            while left:
                bar.show(count - left)
                time.sleep(POLL_SECONDS)
                left = run.filter(outcome__isnull=True).count()
            bar.end()
        outcomes = Counter(run.values_list("outcome", flat=True))
        for outcome in [*Outcome.values, None]:
            if outcomes[outcome]:
                self.stdout.write(f"  {outcome or 'waiting for a worker':<18} {outcomes[outcome]:>8}")


def _open_incident() -> Incident:
    open_now = list(Incident.objects.filter(claims_close__gte=timezone.now()).order_by("slug"))
    if not open_now:
        raise CommandError("no incident is open for claims: name one with --incident SLUG")
    if len(open_now) > 1:
        slugs = ", ".join(incident.slug for incident in open_now)
        raise CommandError(f"several incidents are open for claims ({slugs}): name one with --incident SLUG")
    return open_now[0]


def mailbox_items(path: Path) -> tuple[str, int, Iterator[tuple[str, bytes]]]:
    """(what it is, how many messages, (place, raw bytes) one at a time, in mailbox order)."""
    if path.is_dir() and all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
        box = mailbox.Maildir(path, factory=None, create=False)
        keys = sorted(box.keys(), key=_natural)  # unique names, which begin with the time of delivery
        return "Maildir", len(keys), ((key, box.get_bytes(key)) for key in keys)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".eml"), key=lambda p: p.name)
        return "folder", len(files), ((p.name, p.read_bytes()) for p in files)
    if path.is_file():
        box = mailbox.mbox(path, factory=None, create=False)
        keys = box.keys()  # a table of contents: each message's start and end in the file
        return "mbox", len(keys), _mbox_items(box, keys)
    raise CommandError(f"{path}: no such mbox file, Maildir or folder")


BATCH_MESSAGES, BATCH_BYTES = 200, 16 * 1024 * 1024


def batches(items: Iterator[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    """Messages in batches of at most BATCH_MESSAGES and about BATCH_BYTES: memory stays bounded."""
    batch, size = [], 0
    for place, raw in items:
        batch.append((place, raw))
        size += len(raw)
        if len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _natural(name: str) -> list:
    """Numbers in a name compared as numbers: `1700000000.M99P1` before `1700000000.M100P1`."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _mbox_items(box: mailbox.mbox, keys: list) -> Iterator[tuple[str, bytes]]:
    for position, key in enumerate(keys, 1):
        raw = box.get_bytes(key)
        yield f"message {position} sha256 {hashlib.sha256(raw).hexdigest()}", raw


class Bar:
    """A progress bar on a terminal; silent otherwise."""

    def __init__(self, out, label: str, total: int):
        self.out = out if out.isatty() else None
        self.label, self.total = label, max(total, 1)

    def show(self, done: int) -> None:
        if self.out is not None:
            bar = "#" * (done * 30 // self.total)
            self.out.write(f"\r  {self.label:<10} [{bar:<30}] {done}/{self.total}", ending="")
            self.out.flush()

    def end(self) -> None:
        if self.out is not None:
            self.out.write("")
