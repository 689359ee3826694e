from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from claims.services import detection_chunks_requeue, inbound_requeue, tasks_requeue


class Command(BaseCommand):
    help = (
        "Enqueue again the matching of claims still received, the messages never tried, the detection "
        "chunks still pending, the web submissions never handled and the e-mail received but not parsed after "
        "--minutes: their task was lost. Safe to run at any time (Celery beat runs it every minute)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--minutes",
            type=int,
            default=10,
            help="how long a task may be late before it is taken as lost (default 10)",
        )

    def handle(self, *args, minutes, **options):
        if minutes < 1:
            raise CommandError("--minutes must be at least 1")
        older_than = timedelta(minutes=minutes)
        claims, notifications, submissions = tasks_requeue(older_than=older_than)
        chunks = detection_chunks_requeue(older_than=older_than)
        received = inbound_requeue(older_than=older_than)
        self.stdout.write(
            f"{len(claims)} claim(s) enqueued for matching again, "
            f"{len(notifications)} message(s) for sending, {len(chunks)} detection chunk(s), "
            f"{len(submissions)} web submission(s), {len(received)} e-mail(s) received for parsing."
        )
