"""Raw bytes of a message in, what a claim needs out: headers, sender, threading ids, the
visible new text and the attachments. `parse` never raises; a message whose text cannot be
found by MIME rules comes back with `is_parseable` false and whatever else could be read.
"""

import email.policy
import re
from dataclasses import dataclass, field
from email.errors import InvalidBase64CharactersDefect, InvalidBase64LengthDefect, MissingHeaderBodySeparatorDefect
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import BytesParser

from . import charsets
from .text import html_to_text, new_text, tidy, unflow
from .threads import normalise_message_id, referenced_ids

PARSER = BytesParser(policy=email.policy.default)
MAX_DEPTH = 20  # deeper nesting is no real mail; its parts are left unread
# The standard library decodes encoded words and parses addresses in time growing with the
# square of a header's length; no real From or Subject comes near this length.
MAX_HEADER_LENGTH = 8192
BODY_TYPES = {"text/plain", "text/html"}
FORWARDED = {"message/rfc822", "message/global"}
BROKEN_ENCODING = (InvalidBase64CharactersDefect, InvalidBase64LengthDefect)
# NUL and the other C0 controls (tab and newline aside) have no place in text a database stores.
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SURROGATES = re.compile(r"[\ud800-\udfff]")
FOLDING = re.compile(r"\r?\n(?=[ \t])")
HEADER_END = re.compile(rb"(?:\A|\n)\r?\n")


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    content: bytes = field(repr=False)
    is_inline: bool = False
    is_broken: bool = False  # its transfer encoding would not decode: `content` is the body as received
    content_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.content)

    def export(self) -> dict:
        return {"filename": self.filename, "contentType": self.content_type, "size": self.size}


@dataclass(frozen=True)
class Parsed:
    is_parseable: bool
    headers: tuple[tuple[str, str], ...]  # every header of the message itself, in order, unfolded
    from_address: str | None  # None unless From holds exactly one address
    from_name: str
    subject: str
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str  # the visible new text, forwarded messages' text included; plain, not escaped
    attachments: tuple[Attachment, ...] = ()
    content_type: str = "text/plain"
    report_type: str | None = None
    problems: tuple[str, ...] = ()  # what was wrong with the message, for staff

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Every earlier message this one answers, In-Reply-To first."""
        return tuple(dict.fromkeys(self.in_reply_to + self.references))


@dataclass
class _Reading:
    texts: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    found_text: bool = False


def parse(raw: bytes) -> Parsed:
    """Everything the intake decides from, read from the raw bytes of one message."""
    try:
        return _parse(raw)
    except Exception as error:  # the contract: a message is kept whatever it holds, never retried
        return _salvaged(raw, f"parser failed: {type(error).__name__}")


def peek_message_id(raw: bytes) -> str | None:
    """The Message-ID `parse` reads, from the header section alone: cheap enough to take when a
    message is stored, so that later messages can find it (as their duplicate's original, or the
    message they answer) before it is parsed. Never raises."""
    try:
        found = HEADER_END.search(raw)
        message = PARSER.parsebytes(raw[: found.end()] if found else raw, headersonly=True)
        headers = tuple((name, _header_text(value)) for name, value in message.raw_items())
        return normalise_message_id(_topmost(headers).get("message-id"))
    except Exception:
        return parse(raw).message_id


def _parse(raw: bytes) -> Parsed:
    message = PARSER.parsebytes(raw)
    reading = _Reading()
    _walk(message, reading, 0)
    problems = [type(defect).__name__ for defect in message.defects] + reading.problems
    header_ok = HEADER_END.search(raw) is not None and not any(
        isinstance(defect, MissingHeaderBodySeparatorDefect) for defect in message.defects
    )
    if not header_ok:
        problems.append("the header section never ends: the file was cut inside its headers")
    return _parsed(message, reading, is_parseable=header_ok and reading.found_text, problems=problems)


def _parsed(message: Message, reading: _Reading, *, is_parseable: bool, problems: list[str]) -> Parsed:
    headers = tuple((name, _header_text(value)) for name, value in message.raw_items())
    first = _topmost(headers)
    from_address = _from_address(message, problems)
    text = tidy("\n\n".join([new_text(tidy("\n\n".join(reading.texts)))] + reading.forwarded))
    return Parsed(
        is_parseable=is_parseable,
        headers=headers,
        from_address=from_address,
        from_name=_display_name(first.get("from", "")),
        subject=decode_words(first.get("subject", "")),
        message_id=normalise_message_id(first.get("message-id")),
        in_reply_to=referenced_ids(first.get("in-reply-to")),
        references=referenced_ids(first.get("references")),
        text=text if is_parseable else "",
        attachments=tuple(reading.attachments),
        content_type=message.get_content_type(),
        report_type=_param(message, "report-type"),
        problems=tuple(dict.fromkeys(problems)),
    )


def _topmost(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The first value of each header, by lower-cased name."""
    return {name.lower(): value for name, value in reversed(headers)}


def _walk(part: Message, reading: _Reading, depth: int) -> None:
    if depth > MAX_DEPTH:
        reading.problems.append("parts nested too deep were not read")
        return
    content_type = part.get_content_type()
    if part.get_content_maintype() == "multipart":
        _walk_multipart(part, reading, depth)
    elif content_type in FORWARDED and part.is_multipart() and part.get_payload():
        _walk_forwarded(part.get_payload(0), reading, depth)
    elif content_type in BODY_TYPES and not _is_attachment(part):
        reading.texts.append(_body_text(part))
        reading.found_text = True
    else:
        reading.attachments.append(_attachment(part))


def _walk_multipart(part: Message, reading: _Reading, depth: int) -> None:
    if not part.is_multipart():
        # No usable boundary: the parts cannot be told apart, unless a forbidden transfer
        # encoding hides them (undone as MIME layers it: decode first, then read the parts).
        inner = _encoded_multipart(part)
        if inner is None:
            reading.problems.append(f"{part.get_content_type()} without a usable boundary")
            return
        part = inner
    children = part.get_payload()
    if part.get_content_type() == "multipart/alternative" and children:
        chosen = _preferred(children)
        for child in children:
            # The forms not read still hold files (the HTML form's inline images): keep those.
            _walk(child, reading if child is chosen else _Reading(attachments=reading.attachments), depth + 1)
        return
    for child in children:
        _walk(child, reading, depth + 1)


def _walk_forwarded(inner: Message, reading: _Reading, depth: int) -> None:
    forwarded = _Reading(attachments=reading.attachments, problems=reading.problems)
    _walk(inner, forwarded, depth + 1)
    own = new_text(tidy("\n\n".join(forwarded.texts)))
    reading.forwarded.extend(text for text in [own, *forwarded.forwarded] if text)
    reading.found_text = reading.found_text or forwarded.found_text


def _preferred(children: list[Message]) -> Message:
    """Of a multipart/alternative, the plain text the writer typed when it has any, else the
    richest other form (the last, by RFC 2046)."""
    for child in children:
        if child.get_content_type() == "text/plain" and not _is_attachment(child) and _body_text(child).strip():
            return child
    return next((c for c in reversed(children) if c.get_content_type() != "text/plain"), children[-1])


def _encoded_multipart(part: Message) -> Message | None:
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding not in ("base64", "quoted-printable"):
        return None
    content_type = next((v for k, v in part.raw_items() if k.lower() == "content-type"), "")
    head = b"Content-Type: " + content_type.encode("utf-8", "surrogateescape") + b"\r\n\r\n"
    inner = PARSER.parsebytes(head + (part.get_payload(decode=True) or b""))
    return inner if inner.is_multipart() else None


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment" or _filename(part) is not None


def _body_text(part: Message) -> str:
    data = part.get_payload(decode=True) or b""
    text = charsets.decode(data, part.get_content_charset())
    if part.get_content_type() == "text/html":
        return plain(html_to_text(text))
    if (_param(part, "format") or "") == "flowed":
        text = unflow(text, delsp=(_param(part, "delsp") or "") == "yes")
    return plain(text)


def _attachment(part: Message) -> Attachment:
    content, is_broken = _content(part)
    content_id = normalise_message_id(str(part.get("Content-ID"))) if part.get("Content-ID") else None
    inline = part.get_content_disposition() == "inline" or (part.get_content_disposition() is None and bool(content_id))
    return Attachment(
        filename=_filename(part),
        content_type=part.get_content_type(),
        content=content,
        is_inline=inline,
        is_broken=is_broken,
        content_id=content_id,
    )


def _content(part: Message) -> tuple[bytes, bool]:
    if part.is_multipart():  # a message/* part other than a forwarded message: its body as sent
        return _body_as_sent(part), False
    seen = len(part.defects)
    data = part.get_payload(decode=True) or b""
    if any(isinstance(defect, BROKEN_ENCODING) for defect in part.defects[seen:]):
        return _as_received(part.get_payload()), True
    return data, False


def _body_as_sent(part: Message) -> bytes:
    try:
        whole = part.as_bytes(policy=email.policy.default)
    except Exception:
        return b""
    found = HEADER_END.search(whole)
    return whole[found.end() :] if found else b""


def _as_received(payload: object) -> bytes:
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return _clean(name) or None if isinstance(name, str) else None


def _param(part: Message, name: str) -> str | None:
    value = part.get_param(name)
    return value.strip().lower() if isinstance(value, str) else None


def _from_address(message: Message, problems: list[str]) -> str | None:
    """The one From address, or None: several From headers or addresses leave the sender
    unknown rather than letting one be chosen that the verifier did not check."""
    from_headers = [v for k, v in message.raw_items() if k.lower() == "from"]
    if len(from_headers) != 1:
        problems.append(f"{len(from_headers)} From headers")
        return None
    if len(from_headers[0]) > MAX_HEADER_LENGTH:
        problems.append("From is too long to be read")
        return None
    try:
        addresses = message["From"].addresses
    except Exception:
        addresses = ()
    if len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        problems.append("From does not hold exactly one address")
        return None
    address = addresses[0]
    return normalise_address(f"{address.username}@{address.domain}")


def normalise_address(address: str | None) -> str | None:
    """`Local@Example.COM` → `Local@example.com`: domains compare case-insensitively, local
    parts as they are."""
    if not address or "@" not in address:
        return None
    local, _, domain = address.strip().rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not local or not domain or SURROGATES.search(local + domain):
        return None
    return f"{local}@{domain}"


def decode_words(value: str) -> str:
    """A header value as text: RFC 2047 words decoded (adjacent words of one charset joined
    first, so a character split across two words survives), raw 8-bit bytes guessed."""
    value = _header_text(value[:MAX_HEADER_LENGTH])
    try:
        pieces = decode_header(value)
    except Exception:
        return _clean(value)
    decoded = []
    for piece, charset in pieces:
        if isinstance(piece, str):
            decoded.append(piece)
        elif charset is None:
            decoded.append(piece.decode("raw-unicode-escape", "replace"))
        else:
            decoded.append(charsets.decode(piece, charset))
    return _clean("".join(decoded))


def _display_name(value: str) -> str:
    if "<" not in value:
        return ""
    return decode_words(value.rpartition("<")[0]).strip().strip('"').strip()


def _header_text(value: str) -> str:
    """Unfolded, with any raw 8-bit bytes read as text (UTF-8 per RFC 6532, else guessed)."""
    value = FOLDING.sub("", str(value))
    if SURROGATES.search(value):
        value = charsets.decode(value.encode("utf-8", "surrogateescape"), None)
    return value


def _clean(value: str) -> str:
    return SURROGATES.sub("\ufffd", CONTROLS.sub("", value.replace("\r", " ").replace("\n", " ")))


def plain(text: str) -> str:
    """Text safe to store: no NUL or other control characters, no lone surrogates."""
    return SURROGATES.sub("\ufffd", CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))


HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.M)


def _salvaged(raw: bytes, problem: str) -> Parsed:
    """What a crude reading of the header section still gives when the parser itself failed."""
    head = raw[: HEADER_END.search(raw).start()] if HEADER_END.search(raw) else raw
    headers = tuple(
        (m.group(1).decode("ascii"), _header_text(m.group(2).decode("utf-8", "surrogateescape")).strip())
        for m in HEADER_LINE.finditer(head)
    )
    first = _topmost(headers)
    content = EmailMessage(policy=email.policy.default)
    try:
        content["Content-Type"] = first.get("content-type", "text/plain")
        content_type, report_type = content.get_content_type(), _param(content, "report-type")
    except Exception:
        content_type, report_type = "text/plain", None
    sender = re.findall(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+", first.get("from", ""))
    return Parsed(
        is_parseable=False,
        headers=headers,
        from_address=normalise_address(sender[0]) if len(sender) == 1 else None,
        from_name=_display_name(first.get("from", "")),
        subject=decode_words(first.get("subject", "")),
        message_id=normalise_message_id(first.get("message-id")),
        in_reply_to=referenced_ids(first.get("in-reply-to")),
        references=referenced_ids(first.get("references")),
        text="",
        content_type=content_type,
        report_type=report_type,
        problems=(problem,),
    )
