"""Tasks enqueued by their stable names (claims/tasks.py): the services never import the tasks
module, the tasks import the services, and the dependency runs one way."""

from celery import current_app, group
from django.db import transaction

CLAIM_MATCH = "claims.claim_match"
NOTIFICATION_SEND = "claims.notification_send"
WEB_SUBMISSION_FILE = "claims.web_submission_file"
DETECTION_CHUNK_RUN = "claims.detection_chunk_run"
INBOUND_PARSE = "claims.inbound_parse"


def enqueue(name: str, **kwargs) -> None:
    """Now (the caller is outside a transaction, or wants it sent whatever becomes of it)."""
    current_app.tasks[name].delay(**kwargs)


def enqueue_on_commit(name: str, **kwargs) -> None:
    """Once this transaction commits: a task never sees rows that are not there yet."""
    transaction.on_commit(lambda: enqueue(name, **kwargs))


def enqueue_group(name: str, argument: str, values: list) -> None:
    """One message per value, published together."""
    task = current_app.tasks[name]
    group(task.si(**{argument: value}) for value in values).apply_async()
