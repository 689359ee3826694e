import os

from celery import Celery, signals

from config import observability

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("claimdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Tasks log under the id of the request that started them (config/observability.py).
signals.before_task_publish.connect(observability.task_published, weak=False)
signals.task_prerun.connect(observability.task_started, weak=False)
signals.task_postrun.connect(observability.task_ended, weak=False)
