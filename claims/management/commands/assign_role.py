from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from claims.roles import ROLES, RoleConflict, role_assign


class Command(BaseCommand):
    help = "Put a staff user in a role (support, approver or finance), or take them out of it with --remove."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("role", choices=ROLES)
        parser.add_argument("--remove", action="store_true")

    def handle(self, *args, username, role, remove, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"there is no user {username!r}")
        try:
            roles = role_assign(user=user, role=role, remove=remove)
        except RoleConflict as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"{username} now holds: {', '.join(sorted(roles)) or 'no role'}.")
