import getpass

from django.core.management.base import BaseCommand, CommandError

from claims.selectors import incident_get
from claims.services import claims_for_found_users


class Command(BaseCommand):
    help = "E-mail the users detection found owed something but who never filed a claim (once each)."

    def add_arguments(self, parser):
        parser.add_argument("slug")

    def handle(self, *args, slug, **options):
        incident = incident_get(slug=slug)
        if incident is None:
            raise CommandError(f"no incident {slug!r}")
        count = claims_for_found_users(incident=incident, actor=getpass.getuser())
        self.stdout.write(f"{count} user(s) told what was found for them.")
