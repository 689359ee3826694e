from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import m2m_changed, post_migrate


class ClaimsConfig(AppConfig):
    name = "claims"

    def ready(self):
        from anymail.signals import inbound
        from django.contrib.auth import get_user_model

        from . import (
            api_auth,  # noqa: F401  connects forget_api_clients to ApiClient's saves
            tasks,  # noqa: F401  registers the tasks that claims/queue.py enqueues by name
        )
        from .roles import roles_guard, roles_sync
        from .webhooks import inbound_received

        # A test database's flush empties the groups the data migration made; make them again.
        post_migrate.connect(roles_sync, sender=self, dispatch_uid="claims.roles_sync")
        # The last guard of "finance excludes support and approver", whoever edits the groups
        # (the admin's user form, a shell); PostgreSQL has a trigger for raw SQL too.
        m2m_changed.connect(roles_guard, sender=get_user_model().groups.through, dispatch_uid="claims.roles_guard")
        # E-mail from the ESPs' inbound webhooks (anymail.urls, under /anymail/): kept, then parsed.
        inbound.connect(inbound_received, dispatch_uid="claims.inbound_received")


class ClaimdeskAdminConfig(admin_apps.AdminConfig):
    """The admin, with the staff site whose front page is the incident's dashboard."""

    default = False  # claims.apps' own config stays ClaimsConfig

    default_site = "claims.admin_site.ClaimdeskAdminSite"
