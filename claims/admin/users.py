"""Staff users: their roles are groups; the form refuses finance together with support or approver."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm

from ..roles import RoleConflict, roles_check


class StaffChangeForm(UserChangeForm):
    def clean_groups(self):
        groups = self.cleaned_data.get("groups")
        try:
            roles_check(group.name for group in groups or [])
        except RoleConflict as exc:
            raise RoleConflict(exc.message, code="roles") from exc
        return groups


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class StaffAdmin(UserAdmin):
    form = StaffChangeForm
    list_display = ["username", "email", "is_staff", "is_superuser", "roles", "last_login"]
    list_filter = ["is_staff", "is_superuser", "groups"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def roles(self, user):
        return ", ".join(sorted(g.name for g in user.groups.all())) or "–"
