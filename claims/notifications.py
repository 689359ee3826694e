"""E-mail to claimants: localized, sent after commit, retried, never sent twice.

Every message has a key naming its event (e.g. `claim:12:outcome:matched`); the key is
unique in the database, so asking twice for the same message stores one row. Sending
claims the row with a conditional UPDATE (pending -> sending) before it talks to the
e-mail provider: a repeated task finds nothing to claim. If the provider fails, the row
goes back to pending and the task retries; a worker that dies between sending and
recording leaves the row in `sending`, which is never sent again (at most once).
"""

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop

from exchange import selectors as ledger

from . import queue
from .inbound import header_safe
from .models import Claim, Notification

STATUS_SALT = "claimdesk.claim-status"
# A status link opens the claim for this long (STATUS_LINK_DAYS, default 180); then the claimant
# asks for a fresh one, sent to the address on file.
STATUS_LINK_LIFETIME = settings.STATUS_LINK_DAYS * 86400
LANGUAGES = {code for code, _ in settings.LANGUAGES}
LOCALE_TO_LANGUAGE = {"zh": "zh-hans", "zh-cn": "zh-hans", "zh-hans": "zh-hans", "pt": "pt-br", "pt-br": "pt-br"}


def language_for(locale: str | None) -> str:
    """The site language for an account's locale (`zh-CN` -> `zh-hans`), English by default."""
    code = (locale or "").strip().lower().replace("_", "-")
    if code in LOCALE_TO_LANGUAGE:
        return LOCALE_TO_LANGUAGE[code]
    return code if code in LANGUAGES else LOCALE_TO_LANGUAGE.get(code.split("-")[0], "en")


def status_token(claim: Claim) -> str:
    return signing.dumps(str(claim.public_id), salt=STATUS_SALT)


def status_path(claim: Claim) -> str:
    return reverse("claims:status", args=[status_token(claim)])


def absolute(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


@dataclass(frozen=True)
class Thread:
    """An answer to a claimant's e-mail: it threads under their message (its Message-ID, without
    brackets, and the References they sent) and its subject ends with `subject_suffix`."""

    in_reply_to: str | None
    references: tuple[str, ...] = ()
    subject_suffix: str = ""

    def values(self) -> dict:
        """The Notification's fields, header-safe; at most the 20 latest references (RFC 5322
        keeps the first and the latest; the header must stay a sane length)."""
        ids = [i for i in (header_safe(r) for r in self.references) if i and " " not in i]
        ids = ids[:1] + ids[1:][-19:]
        reply_to = header_safe(self.in_reply_to)
        return {
            "in_reply_to": reply_to if " " not in reply_to else "",
            "references": " ".join(ids)[:20000],
            "subject_suffix": header_safe(self.subject_suffix)[:255],
            "from_email": settings.SUPPORT_EMAIL,
        }


def notify(
    *,
    key: str,
    kind: str,
    user_id: int | None,
    claim: Claim | None = None,
    context: dict | None = None,
    language: str | None = None,
    account=None,
    new_key: bool = False,
    to: str | None = None,
    thread: Thread | None = None,
) -> Notification | None:
    """Queue one message to the address on file; a second call with the same key does nothing.

    `new_key`: the caller knows the key cannot exist yet (it names a row created in this same
    transaction), so the row is inserted without looking first; the unique key still guards it.
    `to`: an address with no account (the intake's answer to an unknown sender) instead.
    `thread`: an answer to a claimant's e-mail, threaded under it and sent from SUPPORT_EMAIL.
    """
    if to is None:
        account = account or ledger.account_get(user_id)
        if account is None:
            return None
        to = account.email
    values = {
        "kind": kind,
        "claim": claim,
        "user_id": user_id,
        "to": to,
        "language": language or (claim.language if claim else language_for(account and account.locale)),
        "context": context or {},
        **(thread.values() if thread else {}),
    }
    if new_key:
        notification, created = Notification.objects.create(key=key, **values), True
    else:
        notification, created = Notification.objects.get_or_create(key=key, defaults=values)
    if created:
        queue.enqueue_on_commit(queue.NOTIFICATION_SEND, notification_id=notification.id)
    return notification


def notify_many(messages: list[tuple[str, str, Claim, dict]]) -> None:
    """Queue several messages (key, kind, claim, context) to their claimants' addresses on file in
    a few queries; a key stored before is left as it was (the unique key ignores the repeat)."""
    if not messages:
        return
    accounts = ledger.accounts_get({claim.user_id for _, _, claim, _ in messages})
    rows = [
        Notification(
            key=key,
            kind=kind,
            claim=claim,
            user_id=claim.user_id,
            to=accounts[claim.user_id].email,
            language=claim.language,
            context=context,
        )
        for key, kind, claim, context in messages
        if claim.user_id in accounts
    ]
    Notification.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
    # Unsent ones among them (new, or queued earlier and not tried yet: sending twice is refused).
    ids = list(
        Notification.objects.filter(
            key__in=[row.key for row in rows], status=Notification.Status.PENDING, attempts=0
        ).values_list("id", flat=True)
    )
    transaction.on_commit(lambda: [queue.enqueue(queue.NOTIFICATION_SEND, notification_id=i) for i in ids])


SUBJECTS = {
    "verification": gettext_noop("Confirm your claim"),
    "acknowledgement": gettext_noop("We received your claim"),
    "outcome": gettext_noop("What we found for your claim"),
    "decision": gettext_noop("A decision on your claim"),
    "payout": gettext_noop("Your compensation is on its way"),
    "found": gettext_noop("We found something owed to you"),
    "status_link": gettext_noop("A new link to your claim"),
    "no_account": gettext_noop("Which account is your message about?"),
}


def notification_send(*, notification_id: int) -> bool:
    """Send one queued message; False if another delivery of the task already took it."""
    claimed = Notification.objects.filter(id=notification_id, status=Notification.Status.PENDING).update(
        status=Notification.Status.SENDING, attempts=F("attempts") + 1
    )
    if claimed != 1:
        return False
    notification = Notification.objects.select_related("claim").get(id=notification_id)
    try:
        message = _render(notification)
        message.send()
    except Exception as exc:
        Notification.objects.filter(id=notification_id).update(status=Notification.Status.PENDING, error=str(exc))
        raise
    Notification.objects.filter(id=notification_id).update(
        status=Notification.Status.SENT, sent_at=timezone.now(), error=""
    )
    return True


def _render(notification: Notification) -> EmailMultiAlternatives:
    with translation.override(notification.language):
        context = {**notification.context, "claim": notification.claim}
        if notification.claim is not None:
            context.setdefault("status_url", absolute(status_path(notification.claim)))
        body = render_to_string(f"emails/{notification.kind}.txt", context)
        subject = " ".join(
            filter(None, [gettext(SUBJECTS[notification.kind]), header_safe(notification.subject_suffix)])
        )
    return EmailMultiAlternatives(
        subject=subject,
        body=body,
        to=[notification.to],
        from_email=notification.from_email or None,
        headers=_headers(notification),
    )


def _headers(notification: Notification) -> dict:
    """Our Message-ID, and the thread an answer belongs to. Values that came from a message were
    made header-safe when stored; they are made so again here, whoever wrote the row."""
    headers = {"X-Claimdesk-Key": header_safe(notification.key)}
    if notification.message_id:
        headers["Message-ID"] = f"<{header_safe(notification.message_id)}>"
    if notification.in_reply_to:
        headers["In-Reply-To"] = f"<{header_safe(notification.in_reply_to)}>"
    thread = [header_safe(i) for i in notification.references.split()]
    if notification.in_reply_to:
        thread.append(header_safe(notification.in_reply_to))
    if thread:
        headers["References"] = " ".join(f"<{i}>" for i in dict.fromkeys(thread) if i)
    return headers
