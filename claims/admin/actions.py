"""What the admin's actions share: role checks, a form for what an action needs (a reason, an
amount), and messages that report what changed and, for the rest, why not."""

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from ..roles import APPROVING_ROLES, FINANCE, Actor, Refused, roles_of
from ..services import Outcome


def may_approve(request) -> bool:
    return bool(roles_of(request.user) & APPROVING_ROLES)


def may_pay(request) -> bool:
    return FINANCE in roles_of(request.user)


class RoleActions:
    """ModelAdmin mixin: `permissions=["approve"]` on an action asks for support or approver,
    `permissions=["pay"]` for finance. A superuser holds no role, so sees neither."""

    def has_approve_permission(self, request):
        return may_approve(request)

    def has_pay_permission(self, request):
        return may_pay(request)


def outcomes_report(request, what: str, outcomes) -> None:
    """One message for what changed, one per reason for what did not (counting only real changes)."""
    changed = [o for o in outcomes if o.changed]
    if changed:
        messages.success(request, f"{what}: {len(changed)} changed.")
    skipped: dict[str, list] = {}
    for outcome in outcomes:
        if not outcome.changed:
            skipped.setdefault(outcome.message, []).append(outcome.item_id)
    for why, ids in skipped.items():
        shown = ", ".join(f"#{i}" for i in ids[:10] if i) + (" …" if len(ids) > 10 else "")
        messages.warning(request, f"{what}: {len(ids)} skipped ({why}){' — ' + shown if shown else ''}.")
    if not outcomes:
        messages.info(request, f"{what}: nothing to do.")


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text="Recorded in the audit trail with the change."
    )


class AmountForm(ReasonForm):
    amount = forms.CharField(max_length=60, help_text="A plain decimal with at most the asset's decimals, e.g. 1250.5")
    field_order = ["amount", "reason"]


class AssetAmountForm(AmountForm):
    asset = forms.CharField(max_length=32, help_text="The asset it is paid in, e.g. USDC")
    field_order = ["asset", "amount", "reason"]


def ask(modeladmin, request, queryset, *, form_class, title: str, action: str, single: bool = False):
    """What an action needs from the person (a reason, an amount): (the filled-in form, None), or
    (None, the page that asks for it)."""
    if single and queryset.count() != 1:
        messages.error(request, f"{title}: select exactly one row.")
        return None, None
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        return form, None
    return None, TemplateResponse(
        request,
        "admin/claims/action_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "objects": queryset,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        },
    )


def each(request, label: str, object_ids, act) -> None:
    """Run `act(object_id)` for each selected row (a service acting for one object); report what
    changed and every refusal with the rule that refused it."""
    outcomes = []
    for object_id in object_ids:
        try:
            outcomes.append(Outcome(object_id, True, label) if act(object_id) is not None else None)
        except Refused as exc:
            outcomes.append(Outcome(object_id, False, str(exc)))
    outcomes_report(request, label, [o for o in outcomes if o is not None])


def actor_of(request) -> Actor:
    return Actor.person(request.user)
