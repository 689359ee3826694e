from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from claims.roles import APPROVER, FINANCE, SUPPORT, role_assign

# username: the role it holds (demo administers the site and, as a superuser, holds none).
DEMO_STAFF = {"demo": None, "support": SUPPORT, "approver": APPROVER, "finance": FINANCE}


class Command(BaseCommand):
    help = "Create (or reset) the demo's staff logins, each with the password demo. For the demo only."

    def handle(self, *args, **options):
        for username, role in DEMO_STAFF.items():
            user, created = get_user_model().objects.get_or_create(
                username=username, defaults={"email": f"{username}@claimdesk.example"}
            )
            user.is_staff, user.is_superuser = True, role is None
            user.set_password("demo")
            user.save()
            if role:
                role_assign(user=user, role=role)
            held = f"role {role}" if role else "superuser, no role"
            self.stdout.write(f"Staff login {username}/demo {'created' if created else 'reset'} ({held}).")
