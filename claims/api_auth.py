"""Who calls the API: authentication by API-client token, scopes, and throttles.

Kept apart from the views: DRF's settings import these while the views' module loads.
"""

import hashlib
import time

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, ValidationError
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiClient
from .throttling import count_in_windows

USER_HEADER = "HTTP_X_CLAIMDESK_USER"
USER_PARAMETER = OpenApiParameter(
    "X-Claimdesk-User",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    required=False,
    description="The userId the front end has logged in (required for a token with the `claims` scope).",
)


def token_digest(token: str | bytes) -> str:
    return hashlib.sha256(token if isinstance(token, bytes) else token.encode()).hexdigest()


# token digest -> (valid until, on time.monotonic(); the active client): the front end calls
# hundreds of times a second with one token. Only valid tokens are kept, so the dict holds at
# most one entry per API client.
_known_clients: dict[str, tuple[float, ApiClient]] = {}


def api_client_for(digest: str) -> ApiClient | None:
    """The active client with this token digest, from this process's memory for
    API_CLIENT_CACHE_SECONDS: a client revoked elsewhere is refused by every process within that
    time, and at once by the process that saved it (forget_api_clients)."""
    now = time.monotonic()
    known = _known_clients.get(digest)
    if known is not None and known[0] > now:
        return known[1]
    client = ApiClient.objects.filter(token_hash=digest, is_active=True).select_related("user").first()
    if client is None:
        _known_clients.pop(digest, None)
    elif settings.API_CLIENT_CACHE_SECONDS > 0:
        _known_clients[digest] = (now + settings.API_CLIENT_CACHE_SECONDS, client)
    return client


@receiver([post_save, post_delete], sender=ApiClient)
def forget_api_clients(**kwargs) -> None:
    _known_clients.clear()


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"token":
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Authorization header must be: Token <token>")
        client = api_client_for(token_digest(header[1]))
        if client is None:
            raise AuthenticationFailed("unknown or revoked token")
        return client, None

    def authenticate_header(self, request):
        return "Token"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "claims.api_auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <token>` of an API client",
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "claims.security.StaffSessionAuthentication"
    name = "staffSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "a staff member signed in to the admin (with their second factor where needed)",
        }


def is_staff_caller(request) -> bool:
    user = request.user
    if isinstance(user, ApiClient):
        return user.has_scope(ApiClient.Scope.STAFF)
    return bool(user and user.is_authenticated and user.is_staff)


def is_user_id(raw: str) -> bool:
    """A userId as the exchange writes it: ASCII digits ("²".isdigit() is true, but int() refuses
    it), no leading zero (`0100160` would be counted apart from `100160`), in range."""
    return raw.isascii() and raw.isdigit() and raw[0] != "0" and int(raw) < 2**63


def acting_user_id(request) -> int | None:
    """The user a front-end call acts for (None for staff); a bad header is a 400 naming it."""
    if is_staff_caller(request):
        return None
    raw = request.META.get(USER_HEADER, "")
    if not raw:
        raise ValidationError({"X-Claimdesk-User": ["required: the userId this call acts for"]})
    if not is_user_id(raw):
        raise ValidationError(
            {
                "X-Claimdesk-User": [
                    "must be the userId as the exchange writes it: digits without leading zeros, e.g. 100056"
                ]
            }
        )
    return int(raw)


class CanFileClaims(permissions.BasePermission):
    def has_permission(self, request, view):
        user = request.user
        if isinstance(user, ApiClient):
            return user.has_scope(ApiClient.Scope.CLAIMS) or user.has_scope(ApiClient.Scope.STAFF)
        return is_staff_caller(request)


class IsStaffCaller(permissions.BasePermission):
    def has_permission(self, request, view):
        return is_staff_caller(request)


def acting_person(request):
    """The staff member a call acts for: the logged-in user, or the user an API client with the
    staff scope is bound to (`create_api_client NAME --scope staff --user USERNAME`). Approving,
    rejecting and paying are done by people, so a client bound to nobody may only read."""
    user = request.user
    if isinstance(user, ApiClient):
        user = user.user if user.has_scope(ApiClient.Scope.STAFF) else None
    if user is None or not user.is_authenticated:
        raise PermissionDenied(
            "this is done by a person: log in as staff, or use an API client bound to a staff "
            "user (create_api_client NAME --scope staff --user USERNAME)"
        )
    return user


class FixedWindowThrottle(SimpleRateThrottle):
    """DRF's rate settings with a counter per window (claims/throttling.py), not a history list
    that a busy front end (thousands a minute) would rewrite on every call. WindowThrottled views
    count all their throttles' windows at once."""

    def allow_request(self, request, view):
        self.waits = throttle_waits(request, view, [self])
        return not self.waits

    def wait(self):
        return max(self.waits)


def throttle_waits(request, view, throttles: list[FixedWindowThrottle]) -> list[float]:
    """Count the call in each throttle's window, all in one cache call; the seconds to wait for
    each window it has gone over."""
    due = [
        (throttle, key)
        for throttle in throttles
        if throttle.rate is not None and (key := throttle.get_cache_key(request, view)) is not None
    ]
    if not due:
        return []
    now = due[0][0].timer()
    counts = count_in_windows(due[0][0].cache, [(key, throttle.duration) for throttle, key in due], now)
    return [
        throttle.duration - now % throttle.duration
        for (throttle, _), count in zip(due, counts, strict=True)
        if count > throttle.num_requests
    ]


class WindowThrottled:
    # A view mixin: the call is counted in every throttle's window in one round trip. (A comment,
    # not a docstring: the OpenAPI schema would show it as the description of views without one.)

    def check_throttles(self, request):
        waits = throttle_waits(request, self, self.get_throttles())
        if waits:
            self.throttled(request, max(waits))


class CallerThrottle(FixedWindowThrottle):
    """Per API client (or staff user, or address): a ceiling for the whole caller."""

    scope = "caller"

    def get_cache_key(self, request, view):
        user = request.user
        ident = (
            f"client-{user.pk}"
            if isinstance(user, ApiClient)
            else (f"user-{user.pk}" if user and user.is_authenticated else self.get_ident(request))
        )
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ClaimantThrottle(FixedWindowThrottle):
    """Per user a front-end call acts for: one person cannot flood the queue."""

    scope = "claimant"

    def get_cache_key(self, request, view):
        raw = request.META.get(USER_HEADER, "")
        if request.method != "POST" or not is_user_id(raw):
            return None
        return self.cache_format % {"scope": self.scope, "ident": raw}


ERROR_RESPONSES = {
    "400": "Invalid input: an object naming each field (or `detail`) with its problems.",
    "401": "No valid token.",
    "403": "The caller may not do this.",
    "404": "Not found (or not the acting user's).",
    "429": "Too many requests; `Retry-After` says when to try again.",
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular hook: every operation may answer these errors, each a JSON object."""
    error = {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_RESPONSES.items():
                responses.setdefault(code, {"description": description, "content": error})
            if "requestBody" in operation:
                responses.setdefault(
                    "415",
                    {"description": "The body's Content-Type is not one the operation accepts.", "content": error},
                )
    return result
