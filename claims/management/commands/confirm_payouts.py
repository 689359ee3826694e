from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from claims.management.operators import command_actor, command_refused
from claims.roles import Refused
from claims.services.payouts import ConfirmationInvalid, payouts_confirm


class Command(BaseCommand):
    help = "Record treasury's confirmation file (lineKey,status,transactionId,confirmedAt): all of it or nothing."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--by", required=True, help="the finance member who records it")

    def handle(self, *args, file, by, **options):
        actor = command_actor(by)
        try:
            content = Path(file).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        try:
            recorded = payouts_confirm(content=content, file_name=Path(file).name, actor=actor)
        except ConfirmationInvalid as exc:
            for error in exc.errors:
                self.stderr.write(error)
            raise CommandError(
                f"refused ({exc.rule}): {file} rejected, {len(exc.errors)} error(s), nothing recorded", returncode=1
            ) from exc
        except Refused as exc:
            raise command_refused(exc) from exc
        self.stdout.write(
            f"{file}: {recorded.rows} rows; {recorded.paid} paid, {recorded.failed} failed, "
            f"{recorded.unchanged} unchanged (already recorded)"
        )
