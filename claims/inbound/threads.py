"""Message-IDs as the outcomes compare them: without angle brackets and surrounding blanks."""

import re

BRACKETED = re.compile(r"<([^<>]*)>")


def normalise_message_id(value: str | None) -> str | None:
    """The id in a Message-ID value (`<abc@x>` → `abc@x`), or None when there is none."""
    if value is None:
        return None
    found = BRACKETED.search(value)
    ident = (found.group(1) if found else value).strip()
    return ident or None


def referenced_ids(value: str | None) -> tuple[str, ...]:
    """The ids an In-Reply-To or References value names, in order, each once.

    Bracketed ids are taken and the rest (phrases such as "your message of ...") ignored; a
    value with no brackets at all is read as blank-separated ids, as some clients write it.
    """
    if not value:
        return ()
    found = [ident.strip() for ident in BRACKETED.findall(value)]
    if not found:
        found = value.split()
    return tuple(dict.fromkeys(ident for ident in found if ident))
