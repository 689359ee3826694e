"""/health/: is this process able to work? The database, the cache and, where tasks go to one,
the Celery broker (django-health-check). 200 with each check's result, 500 if any fails; the
plain `/healthz` answers "ok" without touching anything (a load balancer's liveness probe)."""

from functools import partial

from django.conf import settings
from health_check.contrib.redis import Redis
from health_check.views import HealthCheckView
from redis.asyncio import Redis as RedisClient


class Health(HealthCheckView):
    def get_checks(self):
        """Read per request: the broker is checked where tasks go to a Redis broker."""
        self.checks = ["health_check.checks.Database", "health_check.checks.Cache"]
        if settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
            self.checks.append((Redis, {"client_factory": partial(RedisClient.from_url, settings.CELERY_BROKER_URL)}))
        return super().get_checks()
