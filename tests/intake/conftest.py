"""E-mail intake through its public surface: the ESPs' webhooks, `import_mailbox`, the intake
task, `export_inbound`, the admin and the staff API.

The corpus (tests/email, read in name order) assumes accounts `user<ID>@example.com` for userIds
100000..100199, our authserv-id `mx.claimdesk.example` and the support address
`support@claimdesk.example`: the bundle in tests/fixtures/email_accounts holds those accounts
(with the July 3 sample's assets and markets), and its incident is loaded open for claims.
"""

import io
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.inbound.corpus import AUTHSERV_ID, SUPPORT_EMAIL, corpus_files, expected, two_megabyte_message

ACCOUNTS = Path(__file__).resolve().parent.parent / "fixtures" / "email_accounts"
TWO_MEGABYTES_NAME = "53-two-megabyte-attachment.eml"
INTAKE_SETTINGS = {"INBOUND_AUTHSERV_ID": AUTHSERV_ID, "SUPPORT_EMAIL": SUPPORT_EMAIL}


@pytest.fixture(autouse=True)
def intake_settings(settings):
    for name, value in INTAKE_SETTINGS.items():
        setattr(settings, name, value)


def accounts_and_incident(folder: Path):
    """The accounts of the corpus, and its incident open for claims; returns the incident."""
    from claims.models import Incident

    call_command("import_bundle", str(ACCOUNTS / "bundle"), stdout=io.StringIO())
    data = json.loads((ACCOUNTS / "incident.json").read_text())
    data["claims_close"] = (timezone.now() + timedelta(days=30)).isoformat()
    path = folder / "incident-open.json"
    path.write_text(json.dumps(data))
    call_command("load_incident", str(path), stdout=io.StringIO())
    return Incident.objects.get(slug=data["slug"])


@pytest.fixture
def email_incident(tmp_path):
    return accounts_and_incident(tmp_path)


def corpus_folder(folder: Path) -> Path:
    """The corpus as a folder of .eml files (without sidecars), and the 2 MB message last."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in corpus_files():
        shutil.copyfile(path, folder / path.name)
    (folder / TWO_MEGABYTES_NAME).write_bytes(two_megabyte_message()[0])
    return folder


def corpus_expected() -> dict[str, dict]:
    """Each file's sidecar, by file name, in the order received."""
    return {**{path.name: expected(path) for path in corpus_files()}, TWO_MEGABYTES_NAME: two_megabyte_message()[1]}


def corpus_bytes(name: str) -> bytes:
    return next(path for path in corpus_files() if path.name == name).read_bytes()


def compose(
    *,
    sender: str = "user100056@example.com",
    subject: str = "My liquidation",
    verified: bool = True,
    message_id: str | None = "<composed-1@example.com>",
    body: str = "I was liquidated on SOL-PERP, trade 982069.",
    headers: dict | None = None,
) -> bytes:
    """A plain-text message as a claimant's mail program would send it, verified by our server
    (a DMARC pass for the sender's domain) unless told otherwise."""
    lines = [f"From: {sender}", "To: support@claimdesk.example", f"Subject: {subject}"]
    if verified:
        lines.append(f"Authentication-Results: {AUTHSERV_ID}; dmarc=pass header.from={sender.rpartition('@')[2]}")
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode("utf-8")


def receive(raw: bytes, place: str, incident=None):
    """A message stored as import_mailbox stores it (its task runs when the transaction commits)."""
    from claims import services
    from claims.models import InboundMessage

    message, _ = services.inbound_store(
        raw=raw, source=InboundMessage.Source.MAILBOX, mailbox="tests", place=place, incident=incident
    )
    return InboundMessage.objects.get(id=message.id)
