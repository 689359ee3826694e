from django.core.management.base import BaseCommand

from claims.management.operators import command_actor, command_refused
from claims.roles import Refused
from claims.services.payouts import payout_line_release


class Command(BaseCommand):
    help = "Release a failed payout line, so that a later batch pays its items again under a new key."

    def add_arguments(self, parser):
        parser.add_argument("key")
        parser.add_argument("--by", required=True, help="the finance member who releases it")
        parser.add_argument("--reason", default="", help="why (required)")

    def handle(self, *args, key, by, reason, **options):
        actor = command_actor(by)
        try:
            line = payout_line_release(key=key, actor=actor, reason=reason)
        except Refused as exc:
            raise command_refused(exc) from exc
        self.stdout.write(f"{line.key} released: a later batch pays its items again.")
