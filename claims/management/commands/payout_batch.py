from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from claims.management.operators import command_actor, command_incident, command_refused
from claims.roles import Refused
from claims.services.payouts import payout_batch_create, payout_files_write


class Command(BaseCommand):
    help = "Create one payout batch of an incident's approved items and write its two files for treasury."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--by", required=True, help="the finance member who creates the batch")
        parser.add_argument("--asset", default=None, help="only this asset's items")
        parser.add_argument("--output", required=True, help="the folder for the files (created if missing)")

    def handle(self, *args, slug, by, asset, output, **options):
        actor, incident = command_actor(by), command_incident(slug)
        directory = Path(output)
        try:  # before the batch exists: a folder that cannot be made stops nothing half done
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create {directory}: {exc}") from exc
        try:
            batch = payout_batch_create(incident=incident, actor=actor, asset=asset)
        except Refused as exc:
            raise command_refused(exc) from exc
        if batch is None:
            self.stdout.write("no approved item to pay")
            return
        paths = payout_files_write(batch=batch, directory=directory)
        self.stdout.write(
            f"Batch {batch.number} of {slug}: {batch.lines.count()} lines; wrote {', '.join(str(p) for p in paths)}"
        )
