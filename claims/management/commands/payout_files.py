from django.core.management.base import BaseCommand, CommandError

from claims.management.operators import command_incident
from claims.selectors import payout_batch_get
from claims.services.payouts import payout_files_write


class Command(BaseCommand):
    help = "Write an existing payout batch's two treasury files again (the same bytes; nothing else changes)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("batch", type=int)
        parser.add_argument("--output", required=True, help="the folder for the files (created if missing)")

    def handle(self, *args, slug, batch, output, **options):
        incident = command_incident(slug)
        found = payout_batch_get(incident=incident, number=batch)
        if found is None:
            raise CommandError(f"incident {slug} has no payout batch {batch}")
        try:
            paths = payout_files_write(batch=found, directory=output)
        except OSError as exc:
            raise CommandError(f"cannot write into {output}: {exc}") from exc
        self.stdout.write(f"Batch {found.number} of {slug}: wrote {', '.join(str(p) for p in paths)}")
