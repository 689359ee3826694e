from django.core.management.base import BaseCommand, CommandError

from claims.management.operators import command_actor, command_incident, command_refused
from claims.models import ApprovalLimitChange
from claims.roles import Refused
from claims.services import incident_limits_confirm


class Command(BaseCommand):
    help = "Confirm the approval limits proposed for an incident: a second approver, not the one who proposed them."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--by", required=True, help="the approver who confirms")

    def handle(self, *args, slug, by, **options):
        incident = command_incident(slug)
        change = incident.limit_changes.filter(status=ApprovalLimitChange.Status.PENDING).first()
        if change is None:
            raise CommandError(f"no approval limits are waiting for confirmation in {slug}")
        try:
            saved = incident_limits_confirm(change_id=change.id, actor=command_actor(by))
        except Refused as exc:
            raise command_refused(exc) from exc
        self.stdout.write(
            f"Approval limits of {slug} confirmed: auto {change.auto_approve_limit.normalize():f}, "
            f"dual {change.dual_approval_limit.normalize():f} USDC."
        )
        if saved.redetection:
            self.stdout.write(f"Detection #{saved.redetection.pk} started.")
