"""What the payout commands share: the person `--by` names, the incident a slug names, and a
refusal turned into a command error (a message on standard error, exit status 1)."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from claims.models import Incident
from claims.roles import Actor, Refused
from claims.selectors import incident_get


def command_actor(username: str) -> Actor:
    """The person a command acts for; the audit trail records `command-line {username}`."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}: --by names a Django user")
    return Actor.command_line(user)


def command_incident(slug: str) -> Incident:
    incident = incident_get(slug=slug)
    if incident is None:
        raise CommandError(f"no incident {slug!r}")
    return incident


def command_refused(exc: Refused) -> CommandError:
    return CommandError(f"refused ({exc.rule}): {exc}", returncode=1)
