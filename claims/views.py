"""The claimant's pages: start, claim form, verification link, status page."""

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from . import selectors, services
from .explain import explain, number_text
from .forms import AddInformationForm, ClaimForm
from .models import Claim, Incident
from .notifications import STATUS_LINK_LIFETIME, STATUS_SALT, status_path
from .throttling import client_address, window_wait


def too_many(request, scope: str, message: str) -> HttpResponse | None:
    """A fixed-window limit per client address for the public pages that write: the 429 to
    answer (with Retry-After), or None."""
    limit, seconds = settings.WEB_THROTTLE[scope]
    key = f"throttle:{scope}:{client_address(request, settings.TRUSTED_PROXY_COUNT)}"
    wait = window_wait(cache, key, limit, seconds, timezone.now().timestamp())
    return None if wait is None else HttpResponse(message, status=429, headers={"Retry-After": str(wait)})


def start_page(request):
    incidents = selectors.incidents_open_for_claims(now=timezone.now())
    return render(request, "start.html", {"incidents": incidents})


@require_http_methods(["GET", "POST"])
def claim_new(request, slug: str):
    incident = get_object_or_404(Incident, slug=slug)
    closed = not incident.is_open_for_claims(timezone.now())  # shown as such; the service refuses too
    form = ClaimForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and not closed:
        if refused := too_many(request, "claim", _("Too many claims from your address; please try again later.")):
            return refused
        if form.is_valid():
            _file_claim(request, incident, form)
            if not form.errors:
                return redirect("claims:sent")
    return render(request, "claims/claim_form.html", {"incident": incident, "form": form, "closed": closed},
                  status=200 if not form.errors else 400)


def _file_claim(request, incident: Incident, form: ClaimForm) -> None:
    """The same answer after the same work whatever account and e-mail were typed: whether they
    match the exchange's records is decided later, by a task (services.web_submission_file)."""
    values = {"user_id": form.cleaned_data["user_id"], "email": form.cleaned_data["email"],
              "kind": form.cleaned_data["kind"], "description": form.cleaned_data["description"],
              "references": form.references()}
    try:
        services.web_claim_submit(incident=incident, values=values, attachments=form.cleaned_data["attachments"],
                                  language=translation.get_language() or "en")
    except services.ClaimRefused as exc:
        form.add_error(exc.field if exc.field in form.fields else None, str(exc))


def claim_sent(request):
    return render(request, "claims/claim_sent.html")


def claim_verify(request, token: str):
    try:
        claim = services.claim_verify(token=token)
    except services.VerificationFailed as exc:
        return render(request, "claims/verify_failed.html", {"reason": str(exc)}, status=410)
    return redirect(status_path(claim))


def _claim_from_token(token: str, *, expired_ok: bool = False) -> Claim:
    """The claim a signed status link names; an expired link raises SignatureExpired unless
    `expired_ok` (the expired page may still send a fresh link to the address on file)."""
    try:
        public_id = signing.loads(token, salt=STATUS_SALT, max_age=None if expired_ok else STATUS_LINK_LIFETIME)
    except signing.SignatureExpired:
        raise  # a BadSignature too, but a genuine link: the caller offers a fresh one
    except signing.BadSignature as exc:
        raise Http404("unknown claim") from exc
    return get_object_or_404(Claim.objects.select_related("incident"), public_id=public_id)


def _status_expired(request, token: str):
    """An expired status link shows nothing of the claim; it offers a fresh link, sent to the
    address the exchange has on file (at most one a day)."""
    claim = _claim_from_token(token, expired_ok=True)
    sent = False
    if request.method == "POST":
        if refused := too_many(request, "status", _("Too many requests; please try again later.")):
            return refused
        services.status_link_send(claim=claim)
        sent = True
    if settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
        translation.activate(claim.language)
    return render(request, "claims/status_expired.html", {"sent": sent}, status=200 if sent else 410)


@never_cache  # it shows a claim: never kept by a browser or a proxy
@require_http_methods(["GET", "POST"])
def claim_status(request, token: str):
    try:
        claim = _claim_from_token(token)
    except signing.SignatureExpired:
        return _status_expired(request, token)
    shown = claim.merged_into or claim
    if settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
        # Reached from an e-mail: speak the claim's language until the claimant picks another.
        translation.activate(claim.language)
        request.LANGUAGE_CODE = claim.language
    form = AddInformationForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if refused := too_many(request, "status", _("Too many requests; please try again later.")):
            return refused
        if form.is_valid() and (form.cleaned_data["text"] or form.cleaned_data["attachments"]):
            try:
                services.claim_add_information(claim=shown, text=form.cleaned_data["text"],
                                               attachments=form.cleaned_data["attachments"],
                                               actor=f"claimant {claim.user_id}")
            except services.ClaimRefused as exc:
                form.add_error("attachments", str(exc))
            else:
                return redirect(request.path)
    items = [{"item": item, "amount": None if item.amount is None else number_text(item.amount),
              "explanation": explain(kind=item.kind, inputs=item.inputs, amount=item.amount, asset=item.asset,
                                     review_reason=item.review_reason)}
             for item in shown.items.order_by("kind", "reference")]
    no_loss = [{"event": e, "explanation": explain(kind=e["kind"], inputs=e["inputs"], amount="0",
                                                   asset=e["asset"])} for e in shown.no_loss_details]
    return render(request, "claims/claim_status.html", {
        "claim": shown, "merged_from": claim if claim.merged_into else None, "items": items, "no_loss": no_loss,
        "transitions": [{"at": r.at, "label": Claim.Status(r.to_status).label}
                        for r in selectors.history_of(object_type="claim", object_ids=[shown.id])[shown.id]],
        "attachments": shown.attachments.all(), "form": form,
    })


def healthz(request):
    """Liveness for load balancers; also the bare-Django baseline of bench/intake_speed.py."""
    return HttpResponse("ok", content_type="text/plain")
