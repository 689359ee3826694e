"""Claimdesk settings: one file, read from the environment.

The embedded defaults make `make demo` work on a fresh clone (SQLite, Celery tasks
run in-process, e-mail printed to the console). Production and CI set
DATABASE_URL and CELERY_BROKER_URL; see .env.example.
"""

import os
import warnings
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
    "claims.apps.ClaimdeskAdminConfig",  # django.contrib.admin, its front page the dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "health_check",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "anymail",
    "exchange",
    "claims",
    "simulator",  # simulate_incident: bundles for the demo and benchmarks
]

MIDDLEWARE = [
    "config.observability.RequestId",
    "claims.api_wire.ApiJsonErrors",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "claims.security.ContentSecurityPolicy",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "claims.webhooks.InboundBodyMiddleware",  # before anything reads an ESP's post
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "claims.security.StaffTwoFactor",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
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
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Staff sign in with a password and, for approvers, finance and superusers (who move money or
# administer), a TOTP code from an authenticator app (django-otp; claims/security.py). Only a
# development setup (DEBUG) may turn it off, e.g. the demo.
STAFF_2FA = env_bool("STAFF_2FA", True)
if not STAFF_2FA and not DEBUG:
    raise ImproperlyConfigured(
        "STAFF_2FA=0 is for development only (DEBUG=1): staff who move money sign in with two factors."
    )
OTP_TOTP_ISSUER = "Claimdesk"
# Repeated failed sign-ins lock that username from that address for an hour (django-axes).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "1"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "claims.security.client_ip"
AXES_VERBOSE = False

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文"), ("pt-br", "Português (Brasil)")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves static files with DEBUG off too (gunicorn alone is a working site); from the
# app's folders unless `collectstatic` filled STATIC_ROOT (set WHITENOISE_USE_FINDERS=0 then).
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
if WHITENOISE_USE_FINDERS:  # then an empty STATIC_ROOT is expected, not worth a warning per process
    warnings.filterwarnings("ignore", message=f"No directory at: {STATIC_ROOT}")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))

# E-mail goes through anymail in production (EMAIL_BACKEND=anymail.backends.<esp>.EmailBackend
# plus that ESP's ANYMAIL settings); the console backend prints mail during development.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")  # for links in e-mail
STATUS_LINK_DAYS = int(os.environ.get("STATUS_LINK_DAYS", "180"))  # how long a claim's status link opens it
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Claimdesk <claims@claimdesk.example>")
ANYMAIL = {key.removeprefix("ANYMAIL_"): value for key, value in os.environ.items() if key.startswith("ANYMAIL_")}
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
    "tasks-requeue": {"task": "claims.tasks_requeue", "schedule": float(os.environ.get("REQUEUE_SWEEP_SECONDS", "60"))},
}
REQUEUE_AFTER_SECONDS = int(os.environ.get("REQUEUE_AFTER_SECONDS", "60"))
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "claims.api_auth.ApiTokenAuthentication",
        "claims.security.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["claims.api_auth.IsStaffCaller"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "claims.api_wire.DecimalJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["claims.api_wire.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "EXCEPTION_HANDLER": "claims.api_wire.api_exception_handler",
    # Behind TRUSTED_PROXY_COUNT reverse proxies, a caller's address is read from X-Forwarded-For.
    "NUM_PROXIES": int(os.environ.get("TRUSTED_PROXY_COUNT", "0")),
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
        "ClaimKindEnum": "claims.models.ClaimKind",
        "ItemKindEnum": "claims.models.ItemKind",
        "ClaimStatusEnum": "claims.models.ClaimStatus",
        "ItemStatusEnum": "claims.models.ItemStatus",
        "LimitChangeStatusEnum": "claims.models.LimitChangeStatus",
        "PayoutLineStatusEnum": "claims.models.PayoutLineStatus",
        "ApprovalTierEnum": "claims.models.ItemApprovalTier",
        "InboundOutcomeEnum": "claims.models.InboundOutcome",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "claims.api_auth.add_error_responses",
    ],
}

# --- Safe by default when DEBUG is off: HTTPS only, HSTS, cookies sent over HTTPS alone. Each can
# be set from the environment (a development server over plain HTTP sets DEBUG=1). ---
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Behind a TLS-terminating proxy, the request's scheme comes from X-Forwarded-Proto (only set this
# when that proxy overwrites the header).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER") else None
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", str(8 * 3600)))  # a working day
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content Security Policy (django-csp, extended in claims/security.py): nothing inline and nothing
# from elsewhere on the claimant's pages; the admin gets what its pages need.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Ledger import: limits that keep a hostile bundle from making memory grow with its size. A line
# longer than IMPORT_MAX_LINE_BYTES is an error. A compressed file (a .gz, a zip member, a tar.gz's
# members) may expand to IMPORT_MAX_EXPANSION_RATIO times its compressed size, or to
# IMPORT_MIN_EXPANSION_BYTES whatever its ratio: real JSON Lines compress 5 to 20 times, and a tiny
# file of repeated text could pass 200 times without being a threat.
IMPORT_MAX_LINE_BYTES = int(os.environ.get("IMPORT_MAX_LINE_BYTES", str(1 << 20)))
IMPORT_MAX_EXPANSION_RATIO = int(os.environ.get("IMPORT_MAX_EXPANSION_RATIO", "200"))
IMPORT_MIN_EXPANSION_BYTES = int(os.environ.get("IMPORT_MIN_EXPANSION_BYTES", str(16 << 20)))

# How long a process may keep using an API client it has looked up: revoking a token takes up to
# this long to reach every process (0: look it up on every call).
API_CLIENT_CACHE_SECONDS = float(os.environ.get("API_CLIENT_CACHE_SECONDS", "10"))
# How many reverse proxies (load balancer, CDN) stand in front of the app: the client's address is
# the one the outermost trusted proxy saw (X-Forwarded-For, counted from the right); 0 reads
# REMOTE_ADDR. Wrong here, every web user shares one throttle bucket, or a client picks its own.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
# Public pages that write: (requests, seconds) per client address.
WEB_THROTTLE = {"claim": (int(os.environ.get("WEB_CLAIMS_PER_HOUR", "20")), 3600), "status": (60, 3600)}
CACHES = {
    "default": (
        {"BACKEND": "config.cache.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
        if os.environ.get("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Logs: JSON lines in production (LOG_FORMAT=json, the default unless DEBUG), each with the id
# of the request it belongs to, also from the Celery tasks that request started.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.observability.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Errors reported to Sentry when SENTRY_DSN is set (nothing is sent otherwise).
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
if SENTRY_DSN:
    from config.observability import sentry_init

    sentry_init(
        SENTRY_DSN,
        os.environ.get("SENTRY_ENVIRONMENT", "production"),
        float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE", "0")),
    )
