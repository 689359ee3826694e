"""Admin bases for rows the system writes: staff act on them through actions, never edit them."""

from django.contrib import admin

from exchange.admin import ViewOnly, ViewOnlyInline

from .actions import RoleActions
from .history import AuditHistory

__all__ = ["DetectedAdmin", "ViewOnlyInline"]


class DetectedAdmin(RoleActions, AuditHistory, ViewOnly, admin.ModelAdmin):
    """Items, claims, findings, runs, payouts: shown and acted on; never added, edited or deleted
    here (every change goes through a service, with its rules and its record)."""
