"""The case page: one claimant in one incident, everything staff need to decide on one page, with
buttons for exactly the actions this person may take now. Each button calls the same service as
the admin's actions, acting for the person; the service checks the role again and its refusal is
shown as a message (the page only leaves out buttons that would be refused)."""

from dataclasses import dataclass, field

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from .. import selectors, services
from ..explain import explain
from ..models import Claim, Incident, Item
from ..money import amount_text
from ..roles import APPROVER, APPROVING_ROLES, Refused, roles_of
from .actions import actor_of, outcomes_report

CLAIM_REVIEWABLE = (Claim.Status.MATCHED, Claim.Status.UNMATCHED, Claim.Status.NO_LOSS)
CLAIM_DECIDABLE = (*CLAIM_REVIEWABLE, Claim.Status.IN_REVIEW)


def case_url(incident_id: int, user_id: int) -> str:
    return reverse("admin:claims_case", args=[incident_id, user_id])


@dataclass
class ItemRow:
    item: Item
    amount: str
    explanation: str
    approvals: list
    missing: int
    live_key: str | None
    usdc: str
    actions: set = field(default_factory=set)


def item_actions(item: Item, user, given: list, live_key: str | None) -> set[str]:
    """The actions on this item the services would let this person take now (payouts.md)."""
    roles = roles_of(user)
    if not roles & APPROVING_ROLES or item.status == Item.Status.PAID or live_key:
        return set()
    actions = {"set_amount"}
    if item.status in (Item.Status.APPROVED, Item.Status.REJECTED):
        actions.add("send_back")
    if item.status in Item.UNDECIDED or (item.status == Item.Status.APPROVED and item.flagged_at):
        actions.add("reject")
    if item.flagged_at and item.flagged_amount is not None:
        actions.add("accept_recomputation")
    second_needs_approver = (
        item.approvals_required == 2 and given and not given[0].is_approver_role and APPROVER not in roles
    )
    if (
        item.status == Item.Status.COMPUTED
        and not item.flagged_at
        and item.amount_set_by != user.get_username()
        and all(a.approver_id != user.pk for a in given)
        and not second_needs_approver
    ):
        actions.add("approve")
    return actions


def claim_actions(claim: Claim, user, has_items: bool) -> set[str]:
    roles = roles_of(user)
    if not roles & APPROVING_ROLES:
        return set()
    actions = {"unassign"} if claim.assigned_to_id == user.pk else {"assign_to_me"}
    if claim.status in CLAIM_REVIEWABLE:
        actions.add("take_into_review")
    if claim.status in CLAIM_DECIDABLE and claim.merged_into_id is None:
        actions.add("set_amount")
        if not has_items:
            actions.add("reject")
    return actions


def explanation(item: Item, decimals: dict[str, int]) -> str:
    """The claimant's own explanation; an item whose stored inputs lack what it names (rows made by
    hand, not by detection) says so rather than breaking the page."""
    try:
        return explain(
            kind=item.kind,
            inputs=item.inputs,
            amount=item.amount,
            asset=item.asset,
            review_reason=item.review_reason,
            decimals=decimals,
        )
    except (KeyError, TypeError, ArithmeticError):
        return f"{item.formula} (its inputs do not say more)"


def case_context(request, incident: Incident, user_id: int) -> dict:
    case = selectors.case_get(incident=incident, user_id=user_id)
    rows = []
    for item in case.items:
        given = [a for a in item.approvals.all() if a.version == item.version]
        live_key = case.live_lines.get(item.id)
        rows.append(
            ItemRow(
                item=item,
                amount=amount_text(item.amount, case.decimals.get(item.asset)),
                explanation=explanation(item, case.decimals),
                approvals=list(item.approvals.all()),
                missing=max(item.approvals_required - len(given), 0)
                if item.status == Item.Status.COMPUTED and item.approval != Item.Approval.POLICY
                else 0,
                live_key=live_key,
                usdc=amount_text(item.usdc_value, 2),
                actions=item_actions(item, request.user, given, live_key),
            )
        )
    found: dict[int, dict[str, object]] = {}
    for row in rows:
        for claim in row.item.claims.all():
            totals = found.setdefault(claim.id, {})
            if row.item.amount is not None and row.item.status != Item.Status.REJECTED:
                totals[row.item.asset] = totals.get(row.item.asset, 0) + row.item.amount
    claims = [
        {
            "claim": claim,
            "actions": claim_actions(claim, request.user, bool(found.get(claim.id))),
            "claimed": amount_text(claim.claimed_amount, case.decimals.get(claim.claimed_asset)),
            "found": [
                f"{amount_text(total, case.decimals.get(asset))} {asset}"
                for asset, total in sorted(found.get(claim.id, {}).items())
            ],
        }
        for claim in case.claims
    ]
    return {
        "case": case,
        "items": rows,
        "claims": claims,
        "now": timezone.now(),
        "events": [{**event, "text": event_text(event, case.decimals)} for event in case.events],
        "may_act": bool(roles_of(request.user) & APPROVING_ROLES),
    }


def event_text(event: dict, decimals: dict[str, int]) -> str:
    """One ledger event in a line."""
    amount = lambda value, asset: f"{amount_text(value, decimals.get(asset))} {asset}"  # noqa: E731
    kind = event["event"]
    if kind == "fill":
        how = f" ({event['system_order_type']})" if event["system_order_type"] else ""
        return (
            f"{'bought' if event['side'] == 'Bid' else 'sold'} {amount_text(event['quantity'], None)} "
            f"{event['symbol']} at {amount_text(event['price'], None)}{how}, fee "
            f"{amount(event['fee'], event['fee_symbol'])}; trade {event['trade_id']}, order {event['order_id']}"
        )
    if kind == "withdrawal":
        return (
            f"withdrawal {event['id']} of {amount(event['quantity'], event['symbol'])} (fee "
            f"{amount_text(event['fee'], decimals.get(event['symbol']))}), {event['status']}"
            + (f", tx {event['transaction_hash']}" if event["transaction_hash"] else "")
        )
    if kind == "deposit":
        return (
            f"deposit {event['id']} of {amount(event['quantity'], event['symbol'])} ({event['source']}, "
            f"{event['status']})"
            + (f" returning withdrawal {event['withdrawal_id']}" if event["withdrawal_id"] else "")
        )
    if kind == "journal":
        return f"journal {event['id']}, {event['kind']}: {amount(event['quantity'], event['symbol'])}" + (
            f" ({event['reference']})" if event["reference"] else ""
        )
    if kind == "balance":
        return f"balance {amount(event['total'], event['symbol'])}"
    return (
        f"position {event['symbol']} {amount_text(event['net_quantity'], None)} at entry price "
        f"{amount_text(event['entry_price'], None)}"
    )


def case_view(model_admin, request, incident_id: int, user_id: int):
    """GET: the case. POST: one action on one of its claims or items, then back to the case."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    incident = get_object_or_404(Incident, pk=incident_id)
    if request.method == "POST":
        case_act(request, incident, user_id)
        return redirect(case_url(incident.pk, user_id))
    return TemplateResponse(
        request,
        "admin/claims/case.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"Case of {user_id} in {incident.slug}",
            "opts": Claim._meta,
            **case_context(request, incident, user_id),
        },
    )


def case_act(request, incident: Incident, user_id: int) -> None:
    """Run the button's service for the person; a refusal is a message naming its rule."""
    action, data = request.POST.get("action", ""), request.POST
    actor = actor_of(request)
    target = int(data.get("object_id") or 0)
    # Only this case's objects: a forged id of another claimant's item acts on nothing.
    if data.get("object") == "item" and not Item.objects.filter(pk=target, incident=incident, user_id=user_id).exists():
        return messages.error(request, "That item is not in this case.")
    if (
        data.get("object") == "claim"
        and not Claim.objects.filter(pk=target, incident=incident, user_id=user_id).exists()
    ):
        return messages.error(request, "That claim is not in this case.")
    reason = data.get("reason", "")
    try:
        if action == "approve":
            return outcomes_report(request, "Approve", [services.item_approve(item_id=target, actor=actor)])
        if action == "reject":
            return outcomes_report(
                request, "Reject", [services.item_reject(item_id=target, actor=actor, reason=reason)]
            )
        done = {
            "set_amount": lambda: services.item_amount_set(
                item_id=target, actor=actor, amount=data.get("amount", "").strip(), reason=reason
            ),
            "send_back": lambda: services.item_send_back(item_id=target, actor=actor, reason=reason),
            "accept_recomputation": lambda: services.item_recomputation_accept(
                item_id=target, actor=actor, reason=reason
            ),
            "claim_set_amount": lambda: services.item_for_claim_create(
                claim_id=target,
                actor=actor,
                asset=data.get("asset", "").strip().upper(),
                amount=data.get("amount", "").strip(),
                reason=reason,
            ),
        }
        if action in done:
            done[action]()
            return messages.success(request, f"{ACTION_LABELS[action]}: done.")
        if action == "take_into_review":
            return outcomes_report(
                request, "Take into review", [services.claim_take_into_review(claim_id=target, actor=actor)]
            )
        if action == "claim_reject":
            return outcomes_report(
                request, "Reject", services.claim_reject(claim_id=target, actor=actor, reason=reason)
            )
        if action in ("assign_to_me", "unassign"):
            return outcomes_report(
                request,
                "Assign",
                services.claims_assign(
                    claim_ids=[target], actor=actor, to=request.user if action == "assign_to_me" else None
                ),
            )
    except Refused as exc:
        return messages.error(request, f"{ACTION_LABELS.get(action, action)}: refused ({exc}).")
    return messages.error(request, f"There is no action {action!r}.")


ACTION_LABELS = {
    "approve": "Approve",
    "reject": "Reject",
    "set_amount": "Set the amount",
    "send_back": "Send back",
    "accept_recomputation": "Accept the recomputation",
    "claim_set_amount": "Set an amount owed",
    "take_into_review": "Take into review",
    "claim_reject": "Reject",
    "assign_to_me": "Assign",
    "unassign": "Assign",
}
