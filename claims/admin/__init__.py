"""The staff side: the review queue (items and claims, with their actions), incidents, payouts
and the audit trail. Every action checks the person's role in the service it calls."""

from . import audit, inbound, payouts, users  # noqa: F401  each registers its models
from .claims import ClaimAdmin
from .items import IncidentAdmin, ItemAdmin

__all__ = ["ClaimAdmin", "IncidentAdmin", "ItemAdmin"]
