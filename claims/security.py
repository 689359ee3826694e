"""Security beyond Django's own: the Content Security Policy (strict on the claimant's pages, no
inline script or style; with what the admin's pages need under /admin/), and the second factor
(TOTP) that approvers, finance and superusers give when they sign in."""

from urllib.parse import urlencode

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse
from django_otp import devices_for_user
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed

from .roles import APPROVER, FINANCE, roles_of
from .throttling import client_address

# Django's admin (and its theme) sets inline style attributes and a few inline scripts.
ADMIN_ALLOWANCES = {"style-src": ["'unsafe-inline'"], "script-src": ["'unsafe-inline'"]}


class ContentSecurityPolicy(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if request.path.startswith("/admin/") and not report_only:
            parts.update = {**ADMIN_ALLOWANCES, **(parts.update or {})}
        return parts


# --- two factors for the staff who move money ---

TWO_FACTOR_PATHS = ("/admin/2fa/", "/admin/logout/", "/admin/login/", "/admin/jsi18n/")


def needs_second_factor(user) -> bool:
    """Approvers, finance and superusers sign in with a TOTP code as well (STAFF_2FA)."""
    return bool(
        settings.STAFF_2FA
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and (user.is_superuser or roles_of(user) & {APPROVER, FINANCE})
    )


def second_factor_missing(user) -> bool:
    return needs_second_factor(user) and not user.is_verified()


class StaffTwoFactor:
    """Middleware: in the admin, a signed-in person who needs a second factor and has not given it
    goes to enter a code, or first to set up an authenticator app."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.path.startswith("/admin/")
            and not request.path.startswith(TWO_FACTOR_PATHS)
            and second_factor_missing(request.user)
        ):
            step = "verify" if any(devices_for_user(request.user, confirmed=True)) else "setup"
            return redirect(f"{reverse(f'two_factor_{step}')}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


class StaffSessionAuthentication(SessionAuthentication):
    """The API's session login: refused to a person who needs a second factor and has not given it."""

    def authenticate(self, request):
        found = super().authenticate(request)
        if found is not None and second_factor_missing(found[0]):
            raise AuthenticationFailed("two-factor verification required: sign in to the admin with your code first")
        return found


def client_ip(request, *args, **kwargs) -> str:
    """django-axes counts failed sign-ins per address: the one TRUSTED_PROXY_COUNT says."""
    return client_address(request, settings.TRUSTED_PROXY_COUNT)
