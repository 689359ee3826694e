from django.core.management.base import BaseCommand, CommandError

from claims.management.operators import command_incident
from claims.services.payouts import reconcile, reconciliation_csv


class Command(BaseCommand):
    help = (
        "Compare an incident's payout lines with the ledger's compensation credits (CSV). "
        "Exit status 0 when they agree, 1 when there is any difference."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--output", default=None, help="a file to write (default: standard output)")

    def handle(self, *args, slug, output, **options):
        rows = reconcile(incident=command_incident(slug))
        text = reconciliation_csv(rows)
        if output:
            try:
                with open(output, "w", encoding="utf-8", newline="") as target:
                    target.write(text)
            except OSError as exc:
                raise CommandError(f"cannot write {output}: {exc}") from exc
        else:
            self.stdout.write(text, ending="")
        if rows:
            raise CommandError(
                f"{len(rows)} difference(s) between the payout lines of {slug} and the ledger", returncode=1
            )
