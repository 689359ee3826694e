"""E-mail intake's pure logic (email-intake.md): MIME, sender trust, threading and extraction.

No Django here, like `claims/detectors.py`: the webhook, `import_mailbox` and the intake task
store the raw bytes and call these functions.

    parsed = parse(raw)                                   # never raises
    reason = ignored_reason(parsed)                       # "auto_reply" | ... | None
    verified = sender_verified(parsed, authserv_id)       # our server's DMARC verdict
    found = extract(parsed.text, markets)                 # kind, symbols, ids, amounts, userId
"""

from .extract import Extracted, extract
from .kinds import claim_kind
from .mime import Attachment, Parsed, decode_words, normalise_address, parse, peek_message_id
from .text import html_to_text, new_text, unflow
from .threads import normalise_message_id, referenced_ids
from .trust import (
    AUTO_GENERATED,
    AUTO_REPLY,
    BULK,
    DSN,
    AuthResult,
    authentication_results,
    header_safe,
    ignored_reason,
    same_address,
    sender_verified,
)

__all__ = [
    "AUTO_GENERATED",
    "AUTO_REPLY",
    "BULK",
    "DSN",
    "Attachment",
    "AuthResult",
    "Extracted",
    "Parsed",
    "authentication_results",
    "claim_kind",
    "decode_words",
    "extract",
    "header_safe",
    "html_to_text",
    "ignored_reason",
    "new_text",
    "normalise_address",
    "normalise_message_id",
    "parse",
    "peek_message_id",
    "referenced_ids",
    "same_address",
    "sender_verified",
    "unflow",
]
