import getpass
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from claims.models import DetectionRun
from claims.selectors import incident_get, item_summary
from claims.services import DEFAULT_CHUNK_SIZE, detection_start
from exchange.selectors import account_get

POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = "Detect what an incident owes: for one user, or all users in chunks shared by the Celery workers."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--user", type=int, default=None, help="only this userId")
        parser.add_argument("--wait", action="store_true", help="follow the progress until done, then summarise")
        parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)

    def handle(self, *args, slug, user, wait, chunk_size, **options):
        incident = incident_get(slug=slug)
        if incident is None:
            raise CommandError(f"no incident {slug!r}; load it with load_incident first")
        if user is not None and account_get(user) is None:
            raise CommandError(f"no account with userId {user} in the imported ledger")
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        run = detection_start(
            incident=incident,
            user_ids=None if user is None else [user],
            requested_by=getpass.getuser(),
            reason="detect command",
            chunk_size=chunk_size,
        )
        eager = settings.CELERY_TASK_ALWAYS_EAGER
        if not (wait or eager):
            self.stdout.write(
                f"Detection #{run.pk} enqueued: {run.total_users} users. "
                "Follow it in the incident's admin page, or run with --wait."
            )
            return
        self._follow(run)
        self._summarise(incident)

    def _follow(self, run: DetectionRun) -> None:
        terminal = self.stdout.isatty()
        while True:
            run.refresh_from_db()
            if terminal:
                share = run.done_users / run.total_users if run.total_users else 1
                bar = "#" * int(share * 30)
                self.stdout.write(
                    f"\r  detection #{run.pk} [{bar:<30}] {run.done_users}/{run.total_users} users", ending=""
                )
                self.stdout.flush()
            if run.status == DetectionRun.Status.DONE:
                break
            time.sleep(POLL_SECONDS)
        if terminal:
            self.stdout.write("")
        seconds = (run.finished_at - run.started_at).total_seconds()
        self.stdout.write(f"Detection #{run.pk} done: {run.total_users} users in {seconds:.1f}s.")

    def _summarise(self, incident) -> None:
        summary = item_summary(incident=incident)
        self.stdout.write(f"Items of {incident.slug}:")
        for kind, count in summary["per_kind"].items():
            self.stdout.write(f"  {kind:<18} {count:>8}")
        self.stdout.write("Owed per asset (excluding items that need review):")
        for asset, total in summary["owed"].items():
            self.stdout.write(f"  {asset:<8} {total.normalize():f}")
        self.stdout.write(f"Needing review: {summary['needs_review']}")
        if summary["flagged"]:
            self.stdout.write(
                f"Flagged for staff (decided items whose amount detection would change): {summary['flagged']}"
            )
