"""Logs a machine can read, each naming the request it belongs to, also from the Celery tasks
that request started; and error reporting to Sentry when SENTRY_DSN is set."""

import contextvars
import logging
import re
import uuid

request_id = contextvars.ContextVar("request_id", default="")
REQUEST_ID_HEADER = "X-Request-ID"
ACCEPTED_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")  # what a proxy may pass in; anything else is replaced


class RequestId:
    """Middleware: the request's id (a proxy's X-Request-ID when well formed, else a new one), in
    every log line written while serving it and in the response's X-Request-ID."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get(REQUEST_ID_HEADER, "")
        # Not reset when the response leaves this middleware: Django logs a 4xx or 5xx after the
        # middleware chain returns, and that line belongs to this request too. The next request
        # served by this thread sets its own.
        request_id.set(given if ACCEPTED_ID.match(given) else uuid.uuid4().hex)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id.get()
        return response


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


# Celery: the id travels with the task message, and a worker logs under it.


def task_published(headers=None, **kwargs) -> None:
    if headers is not None and request_id.get():
        headers["request_id"] = request_id.get()


def task_started(task=None, **kwargs) -> None:
    """A worker takes the id from the message; a task run in-process (eager) keeps its request's."""
    carried = getattr(task.request, "request_id", None) if task is not None else None
    if carried and ACCEPTED_ID.match(str(carried)):
        task.request.request_id_token = request_id.set(str(carried))


def task_ended(task=None, **kwargs) -> None:
    token = getattr(task.request, "request_id_token", None) if task is not None else None
    if token is not None:
        request_id.reset(token)


def sentry_init(dsn: str, environment: str, traces: float) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    # No personal data leaves: claimants' e-mail addresses and accounts stay here.
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        traces_sample_rate=traces,
        send_default_pii=False,
        integrations=[DjangoIntegration(), CeleryIntegration()],
    )
