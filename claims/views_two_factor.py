"""Setting up and giving the second factor (TOTP) that approvers, finance and superusers need
in the admin (claims/security.py sends them here)."""

import base64

import qrcode
import qrcode.image.svg
from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django_otp import devices_for_user
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice


class TokenForm(forms.Form):
    token = forms.RegexField(
        r"^[0-9]{6}$",
        label="Code from your authenticator app",
        max_length=6,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def _next(request) -> str:
    target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or "/admin/"
    return target if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()) else "/admin/"


@never_cache
@staff_member_required
def two_factor_setup(request):
    """Pair an authenticator app: its secret as a QR code and as text, confirmed by one code."""
    if any(devices_for_user(request.user, confirmed=True)):
        return redirect("two_factor_verify")
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first() or TOTPDevice.objects.create(
        user=request.user, name="authenticator app", confirmed=False
    )
    form = TokenForm(request.POST or None)
    if form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            return redirect(_next(request))
        form.add_error("token", "That code does not match: check the time on your phone and try the next code.")
    qr = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage).to_string(encoding="unicode")
    return render(
        request,
        "admin/two_factor.html",
        {
            "title": "Set up two-factor sign-in",
            "form": form,
            "next": _next(request),
            "setup": True,
            "secret": base64.b32encode(device.bin_key).decode(),
            "qr": mark_safe(qr),
        },
    )  # noqa: S308 - SVG we made


@never_cache
@staff_member_required
def two_factor_verify(request):
    form = TokenForm(request.POST or None)
    if form.is_valid():
        for device in devices_for_user(request.user, confirmed=True):
            if device.verify_token(form.cleaned_data["token"]):
                otp_login(request, device)
                return redirect(_next(request))
        form.add_error("token", "That code does not match: try the current one.")
    return render(
        request,
        "admin/two_factor.html",
        {"title": "Two-factor sign-in", "form": form, "next": _next(request), "setup": False},
    )
