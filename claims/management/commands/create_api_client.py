import secrets

from django.core.management.base import BaseCommand, CommandError

from claims.api_auth import token_digest
from claims.models import ApiClient


class Command(BaseCommand):
    help = "Create an API client and print its token (shown once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scope", action="append", choices=ApiClient.Scope.values, required=True,
                            help="claims (the exchange's front end) or staff; repeatable")

    def handle(self, *args, name, scope, **options):
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"an API client named {name!r} exists already")
        token = secrets.token_urlsafe(32)
        ApiClient.objects.create(name=name, token_hash=token_digest(token), scopes=sorted(set(scope)))
        self.stdout.write(f"API client {name} created with scopes {', '.join(sorted(set(scope)))}.")
        self.stdout.write(f"Token (shown once): {token}")
