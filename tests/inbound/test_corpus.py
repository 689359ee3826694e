"""Every message of the corpus reads as its sidecar says (the parts the pure layer decides)."""

import pytest

from claims.inbound import extract, ignored_reason, parse, sender_verified

from .corpus import AUTHSERV_ID, MARKETS, corpus_files, expected, two_megabyte_message

PIPELINE_ONLY = {"outcome", "userId", "dependsOn", "textIncludes", "textExcludes"}


def observed(raw: bytes) -> dict:
    parsed = parse(raw)
    found = extract(parsed.text, MARKETS)
    return {
        "parseable": parsed.is_parseable,
        "verified": sender_verified(parsed, AUTHSERV_ID),
        "ignoredReason": ignored_reason(parsed),
        "fromAddress": parsed.from_address,
        "fromName": parsed.from_name,
        "subject": parsed.subject,
        "messageId": parsed.message_id,
        "inReplyTo": list(parsed.in_reply_to),
        "references": list(parsed.references),
        **found.export(),
        "namedUserId": found.named_user_id,
        "attachments": [attachment.export() for attachment in parsed.attachments],
        "text": parsed.text,
    }


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.name)
def test_corpus_message_reads_as_its_sidecar_says(path):
    want = expected(path)

    got = observed(path.read_bytes())

    assert {key: got[key] for key in want if key not in PIPELINE_ONLY} == {
        key: value for key, value in want.items() if key not in PIPELINE_ONLY
    }
    for fragment in want.get("textIncludes", []):
        assert fragment in got["text"]
    for fragment in want.get("textExcludes", []):
        assert fragment not in got["text"]


def test_two_megabyte_attachment_is_kept_whole():
    raw, want = two_megabyte_message()

    got = observed(raw)

    assert {key: got[key] for key in want if key not in PIPELINE_ONLY} == {
        key: value for key, value in want.items() if key not in PIPELINE_ONLY
    }


def test_every_corpus_file_has_a_sidecar_with_an_outcome():
    outcomes = {"duplicate", "ignored", "unparseable_kept", "reply", "new_claim", "unverified", "no_account"}

    sidecars = [expected(path) for path in corpus_files()]

    assert len(sidecars) >= 50
    assert all(sidecar["outcome"] in outcomes for sidecar in sidecars)
