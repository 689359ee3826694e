from django.core.management.base import BaseCommand

from claims.services import audit_verify


class Command(BaseCommand):
    help = (
        "Seal what is new, then recompute the audit trail's hash chain from the first record: "
        "'N records, chain intact' (exit 0), or the first record altered, removed or reordered (exit 1)."
    )

    def handle(self, *args, **options):
        verified = audit_verify()
        if not verified.intact:
            self.stderr.write(verified.problem)
            self.stdout.write(verified.problem)
            raise SystemExit(1)
        self.stdout.write(f"{verified.records} records, chain intact")
        if verified.unsealed:
            self.stdout.write(
                f"{verified.unsealed} newer record(s) not sealed yet: a transaction was still writing "
                "when sealing ran; they are sealed by the next run."
            )
