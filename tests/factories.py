"""Factories for the rows tests arrange (factory-boy)."""

from datetime import UTC, datetime
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from claims.models import Incident

INCIDENT_AT = datetime(2025, 7, 3, 10, tzinfo=UTC)


class StaffFactory(factory.django.DjangoModelFactory):
    """A staff member; `roles` puts them in those groups: StaffFactory(username="ann", roles=["support"])."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@claimdesk.example")
    is_staff = True
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get(name=name))


class IncidentFactory(factory.django.DjangoModelFactory):
    """An incident whose window, evaluation and claims all end at one instant, for tests that make
    their items by hand; one-approval tier up to 100 USDC, two-approval up to 10,000."""

    class Meta:
        model = Incident

    slug = factory.Sequence(lambda n: f"incident-{n}")
    title = factory.SelfAttribute("slug")
    window_start = trading_resumed = window_end = evaluation_end = claims_close = INCIDENT_AT
    price_max_age = 300
    bad_fill_tolerance_bps = 50
    auto_approve_limit = Decimal(100)
    dual_approval_limit = Decimal(10000)


def api_client_for(name: str, *roles: str, scopes=("staff",), bound: bool = True, user_id: int | None = None):
    """A DRF test client holding the token of an API client `name`: a staff client bound to a
    new staff member with `roles` (bound=False: bound to nobody), or with `scopes=("claims",)` the
    exchange's front end acting for `user_id`."""
    from rest_framework.test import APIClient

    from claims.api_auth import token_digest
    from claims.models import ApiClient

    person = StaffFactory(username=name, roles=list(roles)) if bound and "staff" in scopes else None
    ApiClient.objects.create(name=name, token_hash=token_digest(f"token-{name}"), scopes=list(scopes), user=person)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token token-{name}", **({"HTTP_X_CLAIMDESK_USER": str(user_id)} if user_id else {})
    )
    return client
