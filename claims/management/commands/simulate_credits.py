import json
from pathlib import Path

from django.core.management.base import BaseCommand
from django.utils import timezone

from claims.management.operators import command_incident
from claims.models import PayoutLine
from claims.selectors import payout_line_list
from exchange import selectors as ledger


class Command(BaseCommand):
    help = (
        "For demos and drills: write a ledger bundle with the exchange's `compensation` credit of each paid line "
        "of an incident, as the exchange would export it once treasury has paid; import it with import_bundle, "
        "then run reconcile."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--output", required=True, help="the bundle folder to write (created if missing)")
        parser.add_argument(
            "--leave-out",
            action="append",
            default=[],
            metavar="KEY",
            help="write no credit for this line (reconcile then reports it missing); repeatable",
        )

    def handle(self, *args, slug, output, leave_out, **options):
        incident = command_incident(slug)
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in ledger.reference_rows().items():
            _write(folder / name, rows)
        first_id = ledger.journal_id_max() + 1
        now = timezone.now().replace(tzinfo=None).isoformat(timespec="milliseconds")
        lines = [
            line
            for line in payout_line_list(incident=incident).filter(status=PayoutLine.Status.PAID)
            if line.key not in leave_out
        ]
        _write(
            folder / "ledger.jsonl",
            [
                {
                    "id": first_id + n,
                    "userId": line.user_id,
                    "symbol": line.asset,
                    "kind": "compensation",
                    "quantity": f"{line.amount.normalize():f}",
                    "timestamp": now,
                    "reference": f"payout:{line.key}",
                }
                for n, line in enumerate(lines)
            ],
        )
        self.stdout.write(f"{len(lines)} compensation credit(s) written to {folder / 'ledger.jsonl'}.")


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
