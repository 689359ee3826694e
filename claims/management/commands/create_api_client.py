import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from claims.api_auth import token_digest
from claims.models import ApiClient


class Command(BaseCommand):
    help = "Create an API client and print its token (shown once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--scope",
            action="append",
            choices=ApiClient.Scope.values,
            required=True,
            help="claims (the exchange's front end) or staff; repeatable",
        )
        parser.add_argument(
            "--user",
            default=None,
            help="staff scope only: the staff user this client acts for (approvals and payouts "
            "through the API are theirs, with their roles)",
        )

    def handle(self, *args, name, scope, user, **options):
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"an API client named {name!r} exists already")
        person = None
        if user is not None:
            if ApiClient.Scope.STAFF not in scope:
                raise CommandError("--user binds a staff client to a person: add --scope staff")
            person = get_user_model().objects.filter(username=user, is_staff=True).first()
            if person is None:
                raise CommandError(f"--user {user}: there is no staff user {user!r}")
        token = secrets.token_urlsafe(32)
        ApiClient.objects.create(name=name, token_hash=token_digest(token), scopes=sorted(set(scope)), user=person)
        acting = f", acting for {person.username}" if person else ""
        self.stdout.write(f"API client {name} created with scopes {', '.join(sorted(set(scope)))}{acting}.")
        self.stdout.write(f"Token (shown once): {token}")
