import csv
import sys

from django.core.management.base import BaseCommand, CommandError

from claims.selectors import EXPORT_HEADER, incident_get, item_export_iter


class Command(BaseCommand):
    help = "Write an incident's items as CSV (the policy's Items export)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--output", default=None, help="a file to write (default: standard output)")

    def handle(self, *args, slug, output, **options):
        incident = incident_get(slug=slug)
        if incident is None:
            raise CommandError(f"no incident {slug!r}")
        rows = item_export_iter(incident=incident)
        if output:
            with open(output, "w", newline="") as target:
                count = _write(target, rows)
            self.stderr.write(f"{count} items written to {output}")
        else:
            _write(self.stdout if self.stdout is not None else sys.stdout, rows)


def _write(target, rows) -> int:
    writer = csv.writer(target, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(EXPORT_HEADER)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
