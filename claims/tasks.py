"""Celery tasks: thin, named, taking ids; a repeated delivery is harmless. The services enqueue
them by name (claims/queue.py) and never import this module: the dependency runs one way.

Redis re-delivers a task whose worker died after visibility_timeout (settings:
CELERY_BROKER_TRANSPORT_OPTIONS); acks_late keeps a task unacknowledged until it has
finished, and every retry countdown (at most RETRY_BACKOFF_MAX) stays far below it.
"""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, OperationalError

from . import services
from .matching import claim_match
from .notifications import notification_send

RETRY_BACKOFF_MAX = 60
# Every task but the sweep: unacknowledged until it has finished, delivered again if its worker
# dies (as the settings' defaults say too, written here because each task relies on it), and
# retried with a backoff of at most RETRY_BACKOFF_MAX seconds.
DURABLE = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "retry_backoff": True,
    "retry_backoff_max": RETRY_BACKOFF_MAX,
}


@shared_task(
    name="claims.detection_chunk_run",
    # IntegrityError: a concurrent detection of the same user inserted the same item first;
    # the retry finds it and updates it instead.
    autoretry_for=(OperationalError, IntegrityError),
    max_retries=8,
    **DURABLE,
)
def detection_chunk_run_task(*, chunk_id: int) -> bool:
    return services.detection_chunk_run(chunk_id=chunk_id)


@shared_task(
    name="claims.claim_match",
    autoretry_for=(OperationalError, IntegrityError),
    max_retries=8,
    **DURABLE,
)
def claim_match_task(*, claim_id: int) -> str | None:
    return claim_match(claim_id=claim_id)


@shared_task(
    name="claims.notification_send",
    autoretry_for=(Exception,),
    max_retries=10,
    **DURABLE,
)
def notification_send_task(*, notification_id: int) -> bool:
    return notification_send(notification_id=notification_id)


@shared_task(
    name="claims.audit_seal",
    autoretry_for=(OperationalError,),
    max_retries=3,
    **DURABLE,
)
def audit_seal_task() -> int:
    """Chain the audit records written since the last seal (Celery beat runs it every minute)."""
    sealed = services.audit_seal()
    return sealed.seal.records if sealed.seal else 0


@shared_task(
    name="claims.web_submission_file",
    autoretry_for=(OperationalError,),
    max_retries=8,
    **DURABLE,
)
def web_submission_file_task(*, submission_id: int) -> str:
    return services.web_submission_file(submission_id=submission_id)


@shared_task(
    name="claims.inbound_parse",
    # IntegrityError: a copy of the message was decided at the same moment; the retry
    # finds it. inbound_parse keeps the message itself after its last attempt.
    autoretry_for=(OperationalError, IntegrityError),
    max_retries=8,
    **DURABLE,
)
def inbound_parse_task(*, message_id: int) -> str | None:
    return services.inbound_parse(message_id=message_id)


@shared_task(name="claims.tasks_requeue", ignore_result=True)
def tasks_requeue_task() -> None:
    """Celery beat's sweep: whatever waited REQUEUE_AFTER_SECONDS for a task that never came
    (a lost claim match, message, web submission, detection chunk or e-mail received) is enqueued again."""
    older_than = timedelta(seconds=settings.REQUEUE_AFTER_SECONDS)
    services.tasks_requeue(older_than=older_than)
    services.detection_chunks_requeue(older_than=older_than)
    services.inbound_requeue(older_than=older_than)
