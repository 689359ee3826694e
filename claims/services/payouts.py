"""Payouts (payouts.md): approved items grouped into lines for treasury, treasury's confirmations
recorded, failed lines released, and the lines compared with the ledger's compensation credits.

A line's key is treasury's idempotency key: it is paid at most once. An item is in at most one
live (exported, paid) or held (failed) line: the incident's row lock serializes its batches, and
the partial unique index payout_item_one_live_line is the backstop. Lock order everywhere:
incident, then lines, then items, then claims (claims_follow_items locks those).
"""

import csv
import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from exchange import selectors as ledger

from ..detectors import quantize
from ..models import Incident, Item, PayoutBatch, PayoutConfirmation, PayoutLine, PayoutLineItem
from ..roles import FINANCE, Actor, Refused
from ..selectors import payout_items_unbatched, payout_line_list, payout_line_list_with_items
from .audit import audit_entry, audit_values, audit_write
from .claims import claims_follow_items

FINANCE_ONLY = frozenset({FINANCE})
LINE_STATE = ("status", "transaction_id", "confirmed_at")
RELEASE_STATE = ("status", "released_by", "released_at", "release_reason")
TREASURY_HEADER = "lineKey,userId,asset,amount"
CONFIRMATION_HEADER = ["lineKey", "status", "transactionId", "confirmedAt"]
RECONCILIATION_HEADER = "lineKey,userId,asset,expected,found,problem"
CREDIT_PREFIX = "payout:"
# ISO-8601 in UTC, as treasury writes it: 2025-07-04T09:30Z, 2025-07-04T09:30:00.123+00:00.
CONFIRMED_AT = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2})?(?:\.(\d{1,9}))?(?:Z|\+00:00)")


def _refuse(message: str, rule: str):
    raise Refused(message, rule=rule)


def _written(amount: Decimal, decimals: int) -> str:
    return f"{quantize(amount, decimals):f}"


# --- batches ---


@transaction.atomic
def payout_batch_create(*, incident: Incident, actor: Actor, asset: str | None = None) -> PayoutBatch | None:
    """One batch of every approved item of the incident (of one asset, if given) that is in no live
    or held line, one line per (userId, asset). None, and nothing written, when there is no item."""
    actor.require(FINANCE_ONLY, "create payout batches")
    decimals = ledger.asset_decimals()
    if asset and asset not in decimals:
        _refuse(f"there is no asset {asset}", "unknown asset")
    # The incident's row lock serializes its batches: a second batch started at the same moment
    # waits here, then numbers after this one and sees the items this one took.
    incident = Incident.objects.select_for_update().get(id=incident.id)
    items = list(payout_items_unbatched(incident=incident, asset=asset).select_for_update().order_by("pk"))
    if not items:
        return None
    now = timezone.now()
    number = (PayoutBatch.objects.filter(incident=incident).aggregate(last=Max("number"))["last"] or 0) + 1
    batch = PayoutBatch.objects.create(
        incident=incident, number=number, asset=asset or "", created_by=actor.name, created_at=now
    )
    grouped = _lines_group(batch, items, decimals)
    PayoutLine.objects.bulk_create([line for line, _ in grouped])
    PayoutLineItem.objects.bulk_create(
        [
            PayoutLineItem(line=line, item=item, version=item.version, amount=item.amount)
            for line, members in grouped
            for item in members
        ]
    )
    audit_write(
        [
            _batch_record(batch, len(grouped), actor),
            *(_exported_record(line, members, actor) for line, members in grouped),
        ]
    )
    return batch


def _lines_group(batch: PayoutBatch, items: list[Item], decimals: dict[str, int]) -> list[tuple]:
    """One unsaved line per (userId, asset), numbered by userId as a number, then asset by code
    point, with the sum of its items' amounts."""
    members_of = defaultdict(list)
    for item in items:
        members_of[(item.user_id, item.asset)].append(item)
    grouped = []
    for number, ((user_id, asset), members) in enumerate(sorted(members_of.items()), start=1):
        with localcontext(prec=60):
            total = sum((item.amount for item in members), Decimal(0))
        amount = quantize(total, decimals[asset])
        if amount != total:  # item amounts have the asset's decimals: the sum is exact, or data is wrong
            _refuse(f"items {[i.id for i in members]} sum to {total}, more decimals than {asset} has", "asset decimals")
        key = f"{batch.incident.slug}.{batch.number}.{number}"
        grouped.append(
            (PayoutLine(batch=batch, number=number, key=key, user_id=user_id, asset=asset, amount=amount), members)
        )
    return grouped


def _batch_record(batch: PayoutBatch, lines: int, actor: Actor):
    return audit_entry(
        actor=actor.name,
        object_type="payout_batch",
        object_id=batch.id,
        action="created",
        at=batch.created_at,
        after={"incident": batch.incident.slug, "number": batch.number, "asset": batch.asset, "lines": lines},
        reason=f"approved {batch.asset + ' ' if batch.asset else ''}items in no live or held line",
    )


def _exported_record(line: PayoutLine, members: list[Item], actor: Actor):
    return audit_entry(
        actor=actor.name,
        object_type="payout_line",
        object_id=line.id,
        action="exported",
        at=line.batch.created_at,
        reason=f"payout batch {line.batch.number}",
        after={
            "key": line.key,
            "user_id": line.user_id,
            "asset": line.asset,
            "amount": line.amount,
            "status": line.status,
            "items": [{"item": i.id, "version": i.version, "amount": i.amount} for i in members],
        },
    )


# --- the treasury files ---


def payout_files_write(*, batch: PayoutBatch, directory) -> list[Path]:
    """Write `{slug}.{batch}.csv` and `{slug}.{batch}.json` into `directory` (created if missing).
    The same batch always gives the same bytes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in payout_files_render(batch=batch).items():
        paths.append(directory / name)
        _file_replace(paths[-1], text)
    return paths


def payout_files_render(*, batch: PayoutBatch) -> dict[str, str]:
    """The two treasury files of a batch, by file name (the commands write them; the admin and the
    API serve them)."""
    lines = list(payout_line_list_with_items(batch=batch))
    decimals = ledger.asset_decimals()
    stem = f"{batch.incident.slug}.{batch.number}"
    return {f"{stem}.csv": _treasury_csv(lines, decimals), f"{stem}.json": _treasury_json(batch, lines, decimals)}


def _treasury_csv(lines: list[PayoutLine], decimals: dict[str, int]) -> str:
    rows = [f"{line.key},{line.user_id},{line.asset},{_written(line.amount, decimals[line.asset])}" for line in lines]
    return "".join(f"{row}\n" for row in [TREASURY_HEADER, *rows])


def _treasury_json(batch: PayoutBatch, lines: list[PayoutLine], decimals: dict[str, int]) -> str:
    document = {
        "incident": batch.incident.slug,
        "batch": batch.number,
        "createdAt": batch.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lines": [
            {
                "lineKey": line.key,
                "userId": line.user_id,
                "asset": line.asset,
                "amount": _written(line.amount, decimals[line.asset]),
                "items": [
                    {
                        "kind": entry.item.kind,
                        "reference": entry.item.reference,
                        "amount": _written(entry.amount, decimals[line.asset]),
                    }
                    for entry in sorted(line.entries.all(), key=lambda e: (e.item.kind, e.item.reference))
                ],
            }
            for line in lines
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _file_replace(path: Path, text: str) -> None:
    # Written aside, then renamed: treasury never picks up half a file.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(text.encode())
    os.replace(partial, path)


# --- the confirmation file ---


@dataclass(frozen=True)
class ConfirmationRow:
    number: int  # the line of the file
    key: str
    status: str
    transaction_id: str
    confirmed_at: datetime | None
    is_valid: bool  # its fields are well formed (its key may still be unknown)


class ConfirmationInvalid(Refused):
    """A confirmation file with errors: nothing of it is recorded. `errors` names each line."""

    def __init__(self, errors: list[str]):
        super().__init__(
            "the confirmation file is rejected, nothing is recorded: " + "; ".join(errors), rule="confirmation file"
        )
        self.errors = errors


@transaction.atomic
def payouts_confirm(*, content: bytes, file_name: str, actor: Actor) -> PayoutConfirmation:
    """Record treasury's confirmation file: every line checked first, then all of it or none.

    A row already recorded changes nothing (the first confirmedAt stays); a line confirmed paid
    marks its items paid and their claims follow; a failed line keeps holding its items."""
    actor.require(FINANCE_ONLY, "record payout confirmations")
    rows, errors = confirmation_parse(content)
    # Checked under the lines' locks (in id order): a file recorded at the same moment is checked
    # against what this one recorded, never against what both read before.
    lines = {
        line.key: line
        for line in PayoutLine.objects.select_for_update().filter(key__in={row.key for row in rows}).order_by("pk")
    }
    errors += _rows_check(rows, lines)
    if errors:
        raise ConfirmationInvalid([message for _, message in sorted(errors, key=lambda e: e[0])])
    now = timezone.now()
    paid, failed = _lines_confirm(rows, lines, actor, file_name)
    if paid:
        _items_pay(paid, actor, now)
    confirmation = PayoutConfirmation.objects.create(
        file_name=file_name,
        sha256=hashlib.sha256(content).hexdigest(),
        recorded_by=actor.name,
        rows=len(rows),
        paid=len(paid),
        failed=len(failed),
        unchanged=len(rows) - len(paid) - len(failed),
    )
    audit_write(
        [
            audit_entry(
                actor=actor.name,
                object_type="payout_confirmation",
                object_id=confirmation.id,
                action="recorded",
                at=now,
                reason=f"confirmation file {file_name}",
                after=audit_values(confirmation, ("file_name", "sha256", "rows", "paid", "failed", "unchanged")),
            )
        ]
    )
    return confirmation


def confirmation_parse(content: bytes) -> tuple[list[ConfirmationRow], list[tuple[int, str]]]:
    """The file's rows and its format errors, as (line number, message)."""
    try:
        text = content.decode("utf-8-sig")  # a BOM is allowed
    except UnicodeDecodeError as exc:
        number = content[: exc.start].count(b"\n") + 1
        return [], [(number, f"line {number}: not UTF-8")]
    lines = _lines_split(text)
    number, header = next(lines, (1, None))
    if header != CONFIRMATION_HEADER:
        wanted = ",".join(CONFIRMATION_HEADER)
        return [], [
            (
                number,
                f"line {number}: the header must be {wanted}"
                if header is not None
                else f"line 1: the header {wanted} is missing",
            )
        ]
    rows, errors = [], []
    for number, fields in lines:
        row, problems = _row_parse(number, fields) if isinstance(fields, list) else (None, [fields])
        rows.extend([row] if row else [])
        errors.extend((number, f"line {number}: {problem}") for problem in problems)
    return rows, errors


def _lines_split(text: str) -> Iterator[tuple[int, list[str] | str]]:
    """(line number, its fields, or why they cannot be read) for each line that is not blank;
    `\n` or `\r\n` ends a line."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            yield number, [field.strip() for field in next(csv.reader([line]))]
        except csv.Error as exc:
            yield number, str(exc)


def _row_parse(number: int, fields: list[str]) -> tuple[ConfirmationRow | None, list[str]]:
    if len(fields) != len(CONFIRMATION_HEADER):
        return None, [
            f"{len(CONFIRMATION_HEADER)} fields expected ({','.join(CONFIRMATION_HEADER)}), found {len(fields)}"
        ]
    key, status, transaction_id, confirmed = fields
    confirmed_at = _confirmed_at_parse(confirmed)
    problems = []
    if not key:
        problems.append("no lineKey")
    if status not in (PayoutLine.Status.PAID, PayoutLine.Status.FAILED):
        problems.append(f"status {status!r} is neither paid nor failed")
    if confirmed_at is None:
        problems.append(f"confirmedAt {confirmed!r} is not an ISO-8601 time in UTC (ending in Z or +00:00)")
    if status == PayoutLine.Status.PAID and not transaction_id:
        problems.append(f"{key} is paid without a transactionId")
    return ConfirmationRow(number, key, status, transaction_id, confirmed_at, not problems), problems


def _confirmed_at_parse(text: str) -> datetime | None:
    match = CONFIRMED_AT.fullmatch(text)
    if not match:
        return None
    try:
        moment = datetime.strptime(match[1] + (match[2] or ":00"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:  # 2025-02-30, 25:00
        return None
    return moment.replace(microsecond=int((match[3] or "0")[:6].ljust(6, "0")))  # beyond microseconds: cut


def _rows_check(rows: list[ConfirmationRow], lines: dict[str, PayoutLine]) -> list[tuple[int, str]]:
    """Errors of rows against the locked lines and against each other."""
    errors, first = [], {}
    for row in rows:
        line = lines.get(row.key)
        if line is None:
            errors.append((row.number, f"line {row.number}: unknown key {row.key}"))
            continue
        if not row.is_valid:
            continue
        earlier = first.setdefault(row.key, row)
        if (earlier.status, earlier.transaction_id) != (row.status, row.transaction_id):
            errors.append(
                (
                    row.number,
                    f"line {row.number}: {row.key} is already on line {earlier.number} with "
                    f"{_reported(earlier)}, here with {_reported(row)}",
                )
            )
        why = _why_not_confirm(line, row)
        if why:
            errors.append((row.number, f"line {row.number}: {row.key} {why}"))
    return errors


def _reported(row: ConfirmationRow) -> str:
    return f"{row.status} {row.transaction_id or '(no transactionId)'}"


def _why_not_confirm(line: PayoutLine, row: ConfirmationRow) -> str | None:
    if line.status == PayoutLine.Status.RELEASED:
        return "was released: a released line is never reported (its items are paid under a new key)"
    if line.status == PayoutLine.Status.PAID and row.status == PayoutLine.Status.FAILED:
        return f"is already paid (transaction {line.transaction_id}): it cannot be failed"
    if line.status == PayoutLine.Status.PAID and row.transaction_id != line.transaction_id:
        return f"is already paid with transaction {line.transaction_id}, not {row.transaction_id}"
    if line.status == PayoutLine.Status.FAILED and row.status == PayoutLine.Status.PAID:
        return "has already failed: it cannot be paid (release it; a later batch pays its items under a new key)"
    return None


def _lines_confirm(
    rows: list[ConfirmationRow], lines: dict[str, PayoutLine], actor: Actor, file_name: str
) -> tuple[list[PayoutLine], list[PayoutLine]]:
    """Record each exported line's first row; a line already final stays as it is (a repeat)."""
    confirmed, records = {PayoutLine.Status.PAID: [], PayoutLine.Status.FAILED: []}, []
    for row in rows:
        line = lines[row.key]
        if line.status != PayoutLine.Status.EXPORTED:
            continue
        before = audit_values(line, LINE_STATE)
        line.status, line.transaction_id, line.confirmed_at = row.status, row.transaction_id, row.confirmed_at
        confirmed[row.status].append(line)
        records.append(
            audit_entry(
                actor=actor.name,
                object_type="payout_line",
                object_id=line.id,
                action=row.status,
                before=before,
                after=audit_values(line, LINE_STATE),
                reason=f"confirmation file {file_name}, line {row.number}",
            )
        )
    changed = [*confirmed[PayoutLine.Status.PAID], *confirmed[PayoutLine.Status.FAILED]]
    PayoutLine.objects.bulk_update(changed, LINE_STATE)
    audit_write(records)
    return confirmed[PayoutLine.Status.PAID], confirmed[PayoutLine.Status.FAILED]


def _items_pay(lines: list[PayoutLine], actor: Actor, now: datetime) -> None:
    """Mark the paid lines' items paid (they are approved, at the version in the line), and let
    their claims follow."""
    entries = list(
        PayoutLineItem.objects.filter(line__in=lines, is_holding=True).select_related("line").order_by("item_id")
    )
    item_ids = [entry.item_id for entry in entries]
    locked = dict(Item.objects.select_for_update().filter(id__in=item_ids).order_by("pk").values_list("id", "version"))
    changed = [e.item_id for e in entries if locked.get(e.item_id) != e.version]
    if changed:  # an item in a live line keeps its version (approvals.py): this is a broken invariant
        _refuse(f"items {changed} changed version since they were batched", "item changed")
    # Conditional: only an approved item becomes paid.
    moved = Item.objects.filter(id__in=item_ids, status=Item.Status.APPROVED).update(
        status=Item.Status.PAID, updated_at=now
    )
    if moved != len(item_ids):
        _refuse(f"of the items {item_ids}, only {moved} are approved", "item not approved")
    audit_write(
        [
            audit_entry(
                actor=actor.name,
                object_type="item",
                object_id=e.item_id,
                action="paid",
                at=now,
                before={"status": Item.Status.APPROVED, "version": e.version},
                after={"status": Item.Status.PAID, "version": e.version, "line": e.line.key},
                reason=f"payout line {e.line.key} paid, transaction {e.line.transaction_id}",
            )
            for e in entries
        ]
    )
    claims_follow_items(item_ids=item_ids, actor=actor)


# --- releasing a failed line ---


@transaction.atomic
def payout_line_release(*, key: str, actor: Actor, reason: str) -> PayoutLine:
    """Let a later batch pay a failed line's items again (under a new key)."""
    actor.require(FINANCE_ONLY, "release payout lines")
    reason = (reason or "").strip()
    if not reason:
        _refuse("releasing a payout line needs a reason", "reason required")
    line = PayoutLine.objects.select_for_update().filter(key=key).first()
    if line is None:
        _refuse(f"there is no payout line {key}", "unknown line")
    if line.status != PayoutLine.Status.FAILED:
        _refuse(f"{key} is {line.status}: only a failed line is released", "not failed")
    credits = ledger.compensation_entry_list(reference=f"{CREDIT_PREFIX}{key}")
    if credits:
        _refuse(
            f"the ledger holds {CREDIT_PREFIX}{key} (journal:{credits[0].id}, {credits[0].quantity.normalize():f} "
            f"{credits[0].symbol}): treasury said failed, but the money arrived",
            "ledger credit",
        )
    before = audit_values(line, RELEASE_STATE)
    line.status, line.released_by, line.released_at, line.release_reason = (
        PayoutLine.Status.RELEASED,
        actor.name,
        timezone.now(),
        reason,
    )
    line.save(update_fields=[*RELEASE_STATE])
    freed = list(line.entries.filter(is_holding=True).order_by("item_id").values_list("item_id", flat=True))
    PayoutLineItem.objects.filter(line=line, is_holding=True).update(is_holding=False)
    audit_write(
        [
            audit_entry(
                actor=actor.name,
                object_type="payout_line",
                object_id=line.id,
                action="released",
                before=before,
                after={**audit_values(line, RELEASE_STATE), "items_freed": freed},
                reason=reason,
                at=line.released_at,
            )
        ]
    )
    return line


# --- reconciliation against the ledger ---


@dataclass(frozen=True)
class ReconciliationRow:
    line_key: str
    user_id: int
    asset: str
    expected: str
    found: str
    problem: str

    def csv_line(self) -> str:
        return f"{self.line_key},{self.user_id},{self.asset},{self.expected},{self.found},{self.problem}\n"


def reconcile(*, incident: Incident) -> list[ReconciliationRow]:
    """The incident's lines against the ledger's `compensation` entries, as payouts.md's table:
    this incident's keys in key order, then unknown keys by text, then unreferenced entries by id."""
    decimals = ledger.asset_decimals()
    credits = defaultdict(list)
    for entry in ledger.compensation_entry_list(reference_prefix=f"{CREDIT_PREFIX}{incident.slug}."):
        credits[entry.reference.removeprefix(CREDIT_PREFIX)].append(entry)
    rows = []
    for line in payout_line_list(incident=incident):
        rows.extend(_line_problems(line, credits.pop(line.key, []), decimals))
    for key, entries in sorted(credits.items()):
        rows.append(
            ReconciliationRow(
                key,
                entries[0].user_id,
                entries[0].symbol,
                "",
                _quantity(entries, entries[0].symbol, decimals),
                "unknown_credit",
            )
        )
    for entry in ledger.compensation_entry_list(outside_prefix=CREDIT_PREFIX):
        rows.append(
            ReconciliationRow(
                f"ledger:{entry.id}",
                entry.user_id,
                entry.symbol,
                "",
                _quantity([entry], entry.symbol, decimals),
                "unreferenced_credit",
            )
        )
    return rows


def _line_problems(line: PayoutLine, entries: list, decimals: dict[str, int]) -> list[ReconciliationRow]:
    """One line's rows, in the order of the spec's table."""
    row = lambda expected, found, problem: ReconciliationRow(
        line.key, line.user_id, line.asset, expected, found, problem
    )
    amount = _value_written(line.amount, line.asset, decimals)
    if line.status != PayoutLine.Status.PAID:
        return [row("", _quantity(entries, line.asset, decimals), "credit_not_paid")] if entries else []
    if not entries:
        return [row(amount, "", "missing_credit")]
    if len(entries) > 1:
        return [row("1", str(len(entries)), "duplicate_credit")]
    entry, rows = entries[0], []
    if (entry.user_id, entry.symbol) != (line.user_id, line.asset):
        rows.append(row(f"{line.user_id} {line.asset}", f"{entry.user_id} {entry.symbol}", "wrong_account"))
    if entry.quantity != line.amount:  # as values: 41 equals 41.000000
        rows.append(row(amount, _quantity(entries, line.asset, decimals), "amount_mismatch"))
    return rows


def _quantity(entries: list, asset: str, decimals: dict[str, int]) -> str:
    with localcontext(prec=60):
        total = sum((entry.quantity for entry in entries), Decimal(0))
    return _value_written(total, asset, decimals)


def _value_written(value: Decimal, asset: str, decimals: dict[str, int]) -> str:
    """With the asset's decimals; a value with more digits than that is written in full, never
    rounded into agreement with what it is compared to."""
    places = decimals.get(asset)
    if places is not None and quantize(value, places) == value:
        return _written(value, places)
    return f"{value.normalize():f}" if value else "0"


def reconciliation_csv(rows: list[ReconciliationRow]) -> str:
    return "".join([f"{RECONCILIATION_HEADER}\n", *(row.csv_line() for row in rows)])
