from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from claims.management.operators import command_actor, command_incident
from claims.models import ItemKind
from claims.money import plain_decimal
from claims.roles import APPROVING_ROLES
from claims.selectors import items_undecided
from claims.services import items_approve

BATCH = 1000


class Command(BaseCommand):
    help = (
        "Give USERNAME's approval to the current version of every matching undecided item that USERNAME may "
        "approve; print what was approved and what was skipped, and why."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--by", required=True, help="the staff user who approves")
        parser.add_argument("--user", type=int, default=None, help="only this userId's items")
        parser.add_argument("--kind", choices=ItemKind.values, default=None)
        parser.add_argument(
            "--max-usdc",
            default=None,
            help="only items worth at most this many USDC (inclusive); skips items of unknown value",
        )

    def handle(self, *args, slug, by, user, kind, max_usdc, **options):
        incident = command_incident(slug)
        actor = command_actor(by)
        if not actor.roles & APPROVING_ROLES:
            self.stderr.write(f"{actor.username} holds no role that approves (support or approver): nothing done.")
            raise SystemExit(1)
        limit = None if max_usdc is None else plain_decimal(max_usdc)
        if max_usdc is not None and limit is None:
            raise CommandError(f"--max-usdc {max_usdc!r}: expected a plain decimal such as 10000")
        ids, skipped = [], Counter()
        for item_id, usdc in items_undecided(incident=incident, user_id=user, kind=kind):
            if limit is None or (usdc is not None and usdc <= limit):
                ids.append(item_id)
            elif usdc is None:
                skipped["its USDC value is unknown (--max-usdc skips it)"] += 1
        approved, given = self._approve(ids, actor, skipped)
        self.stdout.write(
            f"{approved} item(s) approved, {given} approval(s) given that await another, "
            f"{sum(skipped.values())} skipped."
        )
        for why, count in skipped.most_common():
            self.stdout.write(f"  skipped {count}: {why}")

    def _approve(self, ids: list[int], actor, skipped: Counter) -> tuple[int, int]:
        approved = given = 0
        # One transaction per batch: a long run commits as it goes and holds few locks at a time.
        for start in range(0, len(ids), BATCH):
            for outcome in items_approve(item_ids=ids[start : start + BATCH], actor=actor):
                if not outcome.changed:
                    skipped[outcome.message] += 1
                elif outcome.message == "approved":
                    approved += 1
                else:
                    given += 1
        return approved, given
