from django.apps import AppConfig


class ClaimsConfig(AppConfig):
    name = "claims"

    def ready(self):
        from . import api_auth  # noqa: F401  connects forget_api_clients to ApiClient's saves
