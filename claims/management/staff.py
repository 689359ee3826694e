"""What the staff commands share: `--by USERNAME` names the person a command acts for."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from claims.roles import Actor
from claims.selectors import incident_get


def actor_by(username: str) -> Actor:
    """The person named by --by, as the audit trail records a command: `command-line alice`."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"--by {username}: there is no staff user {username!r}")
    return Actor.command_line(user)


def incident_by(slug: str):
    incident = incident_get(slug=slug)
    if incident is None:
        raise CommandError(f"there is no incident {slug!r}")
    return incident
