from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (or reset) the demo staff login demo/demo. For the demo only."

    def handle(self, *args, **options):
        user, created = get_user_model().objects.get_or_create(username="demo", defaults={"email": "demo@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password("demo")
        user.save()
        self.stdout.write(f"Staff login demo/demo {'created' if created else 'reset'}.")
