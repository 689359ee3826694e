"""Admin bases for rows the system writes: staff act on them through actions, never edit them."""

from django.contrib import admin

from .actions import RoleActions
from .history import AuditHistory


class DetectedAdmin(RoleActions, AuditHistory, admin.ModelAdmin):
    """Items, claims, findings, runs, payouts: shown and acted on; never added, edited or deleted
    here (every change goes through a service, with its rules and its record)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
