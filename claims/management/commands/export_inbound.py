"""Every message received, as JSON Lines in the order received, duplicates included
(email-intake.md, "Export")."""

import json
import sys

from django.core.management.base import BaseCommand

from claims.management.operators import command_incident
from claims.selectors import inbound_export_iter


class Command(BaseCommand):
    help = "Write the messages received (of one incident, or all) as JSON Lines, in the order received."

    def add_arguments(self, parser):
        parser.add_argument("--incident", default=None, help="only this incident's messages")
        parser.add_argument("--output", default=None, help="a file to write (default: standard output)")

    def handle(self, *args, incident, output, **options):
        lines = inbound_export_iter(incident=command_incident(incident) if incident else None)
        if output:
            with open(output, "w", encoding="utf-8", newline="\n") as target:
                count = _write(target, lines)
            self.stderr.write(f"{count} messages written to {output}")
        else:
            _write(self.stdout if self.stdout is not None else sys.stdout, lines)


def _write(target, lines) -> int:
    count = 0
    for line in lines:
        target.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count
