"""Claimdesk settings: one file, read from the environment.

The embedded defaults make `make demo` work on a fresh clone (SQLite, Celery tasks
run in-process, e-mail printed to the console). Production and CI set
DATABASE_URL and CELERY_BROKER_URL; see .env.example.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "anymail",
    "exchange",
    "claims",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "claims.webhooks.InboundBodyMiddleware",  # before anything reads an ESP's post
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo database is shared by the dev server and management commands;
    # wait for a lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文"), ("pt-br", "Português (Brasil)")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))

# E-mail goes through anymail in production (EMAIL_BACKEND=anymail.backends.<esp>.EmailBackend
# plus that ESP's ANYMAIL settings); the console backend prints mail during development.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")  # for links in e-mail
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Claimdesk <claims@claimdesk.example>")
ANYMAIL = {
    key.removeprefix("ANYMAIL_"): value for key, value in os.environ.items() if key.startswith("ANYMAIL_")
}
# E-mail intake (email-intake.md). Claimants write to SUPPORT_EMAIL, and answers to their e-mail
# come from it. Only the Authentication-Results of the server named INBOUND_AUTHSERV_ID (ours, or
# the ESP's inbound servers) can verify a sender; unset, no sender is verified.
SUPPORT_EMAIL = os.environ.get("SUPPORT_EMAIL", "support@claimdesk.example")
INBOUND_AUTHSERV_ID = os.environ.get("INBOUND_AUTHSERV_ID", "")
# The largest request an ESP's inbound webhook may post (a whole message, attachments encoded):
# Django's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) would refuse a message with one photo.
INBOUND_MAX_BYTES = int(os.environ.get("INBOUND_MAX_BYTES", str(60 * 1024 * 1024)))

# Celery. Without a broker, tasks run in-process and eagerly, so the demo needs no Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL or None)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_IGNORE_RESULT = True  # progress lives in the database (DetectionRun), not in results
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis re-delivers a task whose worker died (unacknowledged, acks_late) after this many
# seconds. A detection chunk takes about a second and retry countdowns stay under a minute
# (claims/tasks.py), far inside the default of ten minutes; a task that outlived it would be
# delivered twice, which the tasks tolerate but need not. Tests shorten it.
# Workers look for such tasks every CELERY_UNACKED_RESTORE_INTERVAL seconds (kombu's default
# sweep is only every 100 s). The sweep holds a lock in Redis; a worker killed while holding it
# blocks every sweep until it expires, after CELERY_UNACKED_MUTEX_EXPIRE seconds (kombu: 300).
VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "600"))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "unacked_restore_interval": int(os.environ.get("CELERY_UNACKED_RESTORE_INTERVAL", "10")),
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": int(os.environ.get("CELERY_UNACKED_MUTEX_EXPIRE", "60")),
    # Workers take from the queues in the order below (Redis BRPOP's key order), not in turns.
    "queue_order_strategy": "priority",
}
# The intake task has a queue of its own, taken first: a message's outcome (and its answer) does
# not wait behind a detection run's chunks or a burst of matching; these follow as soon as the
# mail is sorted. Every worker consumes both unless started with -Q.
CELERY_TASK_QUEUES = [Queue("inbound"), Queue("celery")]
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {"claims.inbound_parse": {"queue": "inbound"}}
# Failure drills only: seconds a detection chunk waits before committing (0 in production).
DETECTION_CHUNK_DELAY = float(os.environ.get("CLAIMDESK_DETECTION_CHUNK_DELAY", "0"))
# Periodic work, run by `celery -A config beat` (one beat process per deployment).
CELERY_BEAT_SCHEDULE = {
    # audit.md: the sealer chains new audit records at least every minute.
    "audit-seal": {"task": "claims.audit_seal", "schedule": float(os.environ.get("AUDIT_SEAL_SECONDS", "60"))},
    # Work whose task was lost (a process stopped between commit and publish, a worker killed with
    # the task in hand) is enqueued again once it has waited REQUEUE_AFTER_SECONDS: with the
    # defaults, within two minutes, long before Redis would redeliver (visibility timeout).
    "tasks-requeue": {"task": "claims.tasks_requeue",
                      "schedule": float(os.environ.get("REQUEUE_SWEEP_SECONDS", "60"))},
}
REQUEUE_AFTER_SECONDS = int(os.environ.get("REQUEUE_AFTER_SECONDS", "60"))
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "claims.api_auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["claims.api_auth.IsStaffCaller"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {
        # A whole API client (the exchange's front end speaks for every user) ...
        "caller": os.environ.get("API_THROTTLE_CALLER", "60000/min"),
        # ... and each user it speaks for.
        "claimant": os.environ.get("API_THROTTLE_CLAIMANT", "30/hour"),
    },
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Claimdesk API",
    "DESCRIPTION": "Compensation claims after an exchange incident.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from this site: no assets from the internet
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ClaimKindEnum": "claims.models.ClaimKind", "ItemKindEnum": "claims.models.ItemKind",
        "ClaimStatusEnum": "claims.models.ClaimStatus", "ItemStatusEnum": "claims.models.ItemStatus",
        "LimitChangeStatusEnum": "claims.models.LimitChangeStatus",
        "PayoutLineStatusEnum": "claims.models.PayoutLineStatus", "ApprovalTierEnum": "claims.models.ItemApprovalTier",
        "InboundOutcomeEnum": "claims.models.InboundOutcome",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "claims.api_auth.add_error_responses",
    ],
}

# How long a process may keep using an API client it has looked up: revoking a token takes up to
# this long to reach every process (0: look it up on every call).
API_CLIENT_CACHE_SECONDS = float(os.environ.get("API_CLIENT_CACHE_SECONDS", "10"))
# Public pages that write: (requests, seconds) per client address.
WEB_THROTTLE = {"claim": (int(os.environ.get("WEB_CLAIMS_PER_HOUR", "20")), 3600), "status": (60, 3600)}
CACHES = {
    "default": (
        {"BACKEND": "config.cache.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
        if os.environ.get("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
