import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from claims.services import IncidentFileError, incident_load


class Command(BaseCommand):
    help = "Create or update an incident from a JSON file (keys as in the compensation policy's table)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--by", default=None, help="who makes the change, for the log (default: OS user)")

    def handle(self, *args, file, by, **options):
        try:
            loaded = incident_load(path=file, changed_by=by or getpass.getuser())
        except IncidentFileError as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError(f"{file}: {'; '.join(exc.messages)}") from exc
        slug = loaded.incident.slug
        if loaded.limits_proposed:
            self.stdout.write(
                f"New approval limits proposed (change #{loaded.limits_proposed.pk}): they wait for a "
                f"second approver's confirmation (admin, or manage.py confirm_limits {slug} --by NAME); "
                "the current limits stay until then."
            )
        if loaded.created:
            self.stdout.write(f"Incident {slug} created.")
        elif not loaded.changed:
            self.stdout.write(f"Incident {slug} unchanged.")
        else:
            self.stdout.write(f"Incident {slug} updated: {', '.join(loaded.changed)}.")
            if loaded.redetection:
                self.stdout.write(
                    f"Detection #{loaded.redetection.pk} started for its {loaded.redetection.total_users} users."
                )
