import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from claims.models import Incident
from claims.services import detection_start
from exchange import models as m

from .conftest import JULY3

pytestmark = pytest.mark.django_db


def test_the_start_page_is_served(client):
    response = client.get("/")

    assert response.status_code == 200
    assert b"Claimdesk" in response.content


@pytest.mark.parametrize(
    "model",
    [
        m.ImportRun,
        m.Account,
        m.Asset,
        m.Market,
        m.Fill,
        m.Withdrawal,
        m.Deposit,
        m.JournalEntry,
        m.BalanceSnapshot,
        m.PositionSnapshot,
        m.MarkPrice,
    ],
)
def test_staff_can_browse_the_imported_ledger_but_not_change_it(client, small_bundle, model):
    call_command("import_bundle", str(small_bundle), stdout=io.StringIO())
    staff = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(staff)
    opts = model._meta

    listing = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    adding = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))

    assert listing.status_code == 200
    assert adding.status_code == 403


def test_the_incident_admin_page_shows_detection_progress(client, small_bundle, django_capture_on_commit_callbacks):
    call_command("import_bundle", str(small_bundle), stdout=io.StringIO())
    call_command("load_incident", str(JULY3 / "incident.json"), stdout=io.StringIO())
    incident = Incident.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        detection_start(incident=incident, user_ids=None, requested_by="test")
    client.force_login(get_user_model().objects.create_superuser("staff", "staff@example.com", "pw"))

    page = client.get(reverse("admin:claims_incident_change", args=[incident.pk]))
    items = client.get(reverse("admin:claims_item_changelist") + "?status__exact=needs_review")

    assert page.status_code == 200
    assert b"<progress" in page.content and b"12 / 12 users" in page.content
    assert items.status_code == 200 and b"fill:982025:Ask" in items.content


@pytest.mark.parametrize("model_name", ["item", "finding", "detectionrun", "claim"])
def test_staff_cannot_add_what_the_system_writes(client, model_name):
    client.force_login(get_user_model().objects.create_superuser("staff", "staff@example.com", "pw"))

    assert client.get(reverse(f"admin:claims_{model_name}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:claims_{model_name}_add")).status_code == 403
