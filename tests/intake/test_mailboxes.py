"""`import_mailbox` on an mbox, a Maildir and a folder of .eml files built from the corpus: the
same outcomes as the spec gives, nothing received twice, the same bytes elsewhere a duplicate."""

import io
import json
import mailbox
import shutil
import tracemalloc
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from claims.management.commands.import_mailbox import mailbox_items
from claims.models import InboundMessage, Incident
from tests.inbound.corpus import corpus_files

from .conftest import TWO_MEGABYTES_NAME, compose, corpus_expected, corpus_folder

pytestmark = pytest.mark.django_db(transaction=True)

EXPECTED = corpus_expected()


def build_mbox(path, raws: list[bytes]):
    box = mailbox.mbox(path)
    for raw in raws:
        box.add(raw)
    box.flush()
    box.close()
    return path


def build_maildir(path, raws: list[bytes]):
    box = mailbox.Maildir(path)
    for raw in raws:
        box.add(raw)
    return path


def corpus_raws() -> list[bytes]:
    return [path.read_bytes() for path in corpus_files()]


def import_mailbox(path, **options) -> str:
    out = io.StringIO()
    call_command("import_mailbox", str(path), stdout=out, **options)
    return out.getvalue()


def outcomes() -> list[tuple]:
    return list(InboundMessage.objects.order_by("id").values_list("outcome", "user_id"))


def expected_outcomes() -> list[tuple]:
    return [(want["outcome"], want["userId"]) for name, want in EXPECTED.items() if name != TWO_MEGABYTES_NAME]


@pytest.mark.parametrize("build", [build_mbox, build_maildir], ids=["mbox", "Maildir"])
def test_a_mailbox_built_from_the_corpus_gives_its_outcomes_and_a_second_run_adds_nothing(
    email_incident, tmp_path, build
):
    path = build(tmp_path / "support", corpus_raws())
    import_mailbox(path)
    first = outcomes()

    summary = import_mailbox(path)

    assert first == expected_outcomes()
    assert outcomes() == first
    assert "0 message(s) received, 52 received before." in summary


def test_a_folder_run_twice_receives_each_file_once_and_summarises_the_outcomes(email_incident, tmp_path):
    folder = corpus_folder(tmp_path / "corpus")

    summaries = [import_mailbox(folder), import_mailbox(folder)]

    counts = Counter(want["outcome"] for want in EXPECTED.values())
    assert InboundMessage.objects.count() == len(EXPECTED)
    assert "53 message(s) received, 0 received before." in summaries[0]
    assert all(f"  {outcome:<18} {count:>8}" in summaries[0] for outcome, count in counts.items())
    assert "0 message(s) received, 53 received before." in summaries[1]


def test_the_same_bytes_under_another_name_are_a_new_receipt_and_a_duplicate(email_incident, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.eml").write_bytes(compose())
    import_mailbox(folder)
    shutil.copyfile(folder / "a.eml", folder / "b.eml")

    import_mailbox(folder)

    assert outcomes() == [("new_claim", 100056), ("duplicate", 100056)]


def test_files_other_than_eml_are_left_alone(email_incident, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.eml").write_bytes(compose())
    (folder / "notes.txt").write_bytes(compose(message_id="<other@example.com>"))

    import_mailbox(folder)

    assert InboundMessage.objects.get().place == "a.eml"


def test_without_incident_the_one_open_for_claims_is_used_and_several_are_named(email_incident, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.eml").write_bytes(compose())
    import_mailbox(folder)
    other = Incident.objects.get(id=email_incident.id)
    other.pk, other.slug = None, "second-2025-08-01"
    other.save()

    with pytest.raises(
        CommandError,
        match=r"several incidents are open for claims \(email-2025-07-03, "
        r"second-2025-08-01\)",
    ):
        import_mailbox(folder)
    import_mailbox(folder, incident="second-2025-08-01")

    assert InboundMessage.objects.get().incident_id == email_incident.id


def test_without_an_incident_open_the_command_asks_for_one(email_incident, tmp_path):
    Incident.objects.update(claims_close=timezone.now() - timedelta(days=1))

    with pytest.raises(CommandError, match="no incident is open for claims: name one with --incident SLUG"):
        import_mailbox(tmp_path)


def test_a_progress_bar_on_a_terminal(email_incident, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    folder = corpus_folder(tmp_path / "corpus")
    out = Terminal()

    call_command("import_mailbox", str(folder), stdout=out)

    assert "\r  receiving  [" in out.getvalue() and "53/53" in out.getvalue()


def test_an_mbox_is_read_one_message_at_a_time(tmp_path):
    big = [compose(message_id=f"<big-{n}@example.com>", body=f"{n} " + "x" * 1_000_000) for n in range(30)]
    path = build_mbox(tmp_path / "big.mbox", big)

    tracemalloc.start()
    kind, total, items = mailbox_items(path)
    sizes = [len(raw) for _, raw in items]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert (kind, total, len(sizes)) == ("mbox", 30, 30)
    assert peak < 4 * 1_000_000  # a few messages' worth, not the 30 MB file


def test_export_inbound_writes_one_incidents_messages_in_the_order_received(email_incident, tmp_path):
    folder = corpus_folder(tmp_path / "corpus")
    import_mailbox(folder)
    out = io.StringIO()

    call_command("export_inbound", incident=email_incident.slug, stdout=out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["outcome"] for line in lines] == [want["outcome"] for want in EXPECTED.values()]
    assert list(lines[0]) == [
        "messageId",
        "sha256",
        "outcome",
        "userId",
        "claim",
        "kind",
        "symbols",
        "tradeIds",
        "orderIds",
        "withdrawalIds",
        "txHashes",
        "amounts",
        "attachments",
        "ignoredReason",
    ]
