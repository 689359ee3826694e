import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
JULY3 = FIXTURES / "july3"


@pytest.fixture
def july3_bundle() -> Path:
    return JULY3 / "bundle"


@pytest.fixture
def small_bundle(tmp_path) -> Path:
    """The July 3 sample without its (large) mark prices: quick to import, easy to spoil."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    for source in (JULY3 / "bundle").glob("*.jsonl"):
        shutil.copy(source, folder / source.name)
    return folder


@pytest.fixture(scope="session", autouse=True)
def plain_http_for_the_session():
    """The live server's middleware is made once, before any test's settings: Django's
    SecurityMiddleware reads SECURE_SSL_REDIRECT when it is made, so it is off for the session
    (tests/test_security.py checks the redirect through a test client, which makes its own)."""
    from django.conf import settings

    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def isolated_media_and_cache(settings, tmp_path):
    """Uploads go to this test's folder; throttle counters (in the cache) and what a process keeps
    in memory (API clients, the e-mail intake's open incident and markets) start empty. Tests speak
    plain HTTP to the test client and the live server (the HTTPS redirect and Secure cookies are
    tested on their own), and staff give no second factor unless a test is about it
    (tests/test_security.py)."""
    from django.core.cache import cache

    from claims.api_auth import forget_api_clients
    from claims.services.inbound import forget_markets
    from claims.webhooks import forget_open_incident

    settings.SECURE_SSL_REDIRECT = settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    settings.STAFF_2FA = False
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()
    forget_api_clients()
    forget_open_incident()  # what the e-mail intake keeps for a few seconds: each test has its own
    forget_markets()


SNAPSHOT_PREFIX = "test_snapshot_"


def ledger_models() -> list:
    """The ledger's tables in an order that inserts each row after what it refers to."""
    from django.apps import apps

    from exchange.models import ImportFile, ImportRun

    rest = [m for m in apps.get_app_config("exchange").get_models() if m not in (ImportRun, ImportFile)]
    return [ImportRun, ImportFile, *rest]


@pytest.fixture(scope="session")
def july3_ledger_snapshot(django_db_setup, django_db_blocker) -> list:
    """The July 3 sample bundle imported once for the whole session (the importer tests import it
    themselves), and kept in tables of its own, which Django's flush between tests does not know;
    the ledger's own tables are emptied again at once. `july3_ledger` copies it back for a test."""
    import io

    from django.core.management import call_command
    from django.core.management.color import no_style
    from django.db import connection

    models = ledger_models()
    tables = [m._meta.db_table for m in models]
    with django_db_blocker.unblock():
        leftovers = [m.__name__ for m in models if m.objects.exists()]
        assert not leftovers, f"the ledger is not empty before the sample is imported: {leftovers}"
        call_command("import_bundle", str(JULY3 / "bundle"), stdout=io.StringIO())
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"DROP TABLE IF EXISTS {SNAPSHOT_PREFIX}{table}")
                cursor.execute(f"CREATE TABLE {SNAPSHOT_PREFIX}{table} AS SELECT * FROM {table}")
        connection.ops.execute_sql_flush(connection.ops.sql_flush(no_style(), tables))
    return models


@pytest.fixture
def july3_ledger(july3_ledger_snapshot):
    """The ledger as importing the July 3 sample bundle leaves it, copied from the session's
    snapshot (a second of parsing saved per test); ids continue after the copied rows."""
    from django.core.management.color import no_style
    from django.db import connection

    with connection.cursor() as cursor:
        for model in july3_ledger_snapshot:
            table = model._meta.db_table
            cursor.execute(f"INSERT INTO {table} SELECT * FROM {SNAPSHOT_PREFIX}{table}")
        for sql in connection.ops.sequence_reset_sql(no_style(), july3_ledger_snapshot):
            cursor.execute(sql)


@pytest.fixture
def open_sample_incident(july3_ledger, tmp_path):
    """The July 3 sample bundle imported, and its incident loaded with claims still open."""
    import io
    import json
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from claims.models import Incident

    data = json.loads((JULY3 / "incident.json").read_text())
    data["claims_close"] = (timezone.now() + timedelta(days=30)).isoformat()
    path = tmp_path / "incident-open.json"
    path.write_text(json.dumps(data))
    call_command("load_incident", str(path), stdout=io.StringIO())
    return Incident.objects.get(slug=data["slug"])
