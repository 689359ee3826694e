"""Whom a message is from, whether our own receiving server vouched for that, whether it is
mail a person wrote at all, and how a header value leaves us safely."""

import re
from dataclasses import dataclass, field

from .mime import Parsed, normalise_address


@dataclass(frozen=True)
class AuthResult:
    """One method's verdict in an Authentication-Results header (RFC 8601 `resinfo`)."""

    method: str  # lower case, without a method version: "dmarc"
    result: str  # lower case: "pass"
    properties: dict[str, str] = field(default_factory=dict)  # "header.from" → "example.com"


def same_address(a: str | None, b: str | None) -> bool:
    """Addresses compare with the domain case-insensitive and the local part as it is."""
    a, b = normalise_address(a), normalise_address(b)
    return a is not None and a == b


def sender_verified(parsed: Parsed, authserv_id: str) -> bool:
    """The topmost Authentication-Results of our own server says dmarc=pass for the From
    address's domain. Lower headers are ignored even when they are ours: anything below our
    server's own header was written before the message reached us, by anyone."""
    domain = _domain(parsed.from_address)
    if domain is None or not authserv_id.strip():
        return False
    for value in parsed.header_all("Authentication-Results"):
        server, results = authentication_results(value)
        if server is not None and server.lower() == authserv_id.strip().lower():
            return _dmarc_passes(results, domain)
    return False


def _dmarc_passes(results: list[AuthResult], domain: str) -> bool:
    """A pass for this domain, and no other DMARC verdict on it; a pass for another proves nothing."""
    verdicts = [r.result for r in results if r.method == "dmarc" and _domain(r.properties.get("header.from")) == domain]
    return bool(verdicts) and all(verdict == "pass" for verdict in verdicts)


def _domain(address_or_domain: str | None) -> str | None:
    if not address_or_domain:
        return None
    domain = address_or_domain.rpartition("@")[2].strip().rstrip(".").lower()
    return domain or None


def authentication_results(value: str) -> tuple[str | None, list[AuthResult]]:
    """The authserv-id and the results of one Authentication-Results value (RFC 8601):
    comments in parentheses are dropped, quoted strings read, statements split at ";"."""
    statements = _statements(_tokens(value))
    if not statements or not statements[0] or statements[0][0] in ("=", ";"):
        return None, []
    return statements[0][0], [r for r in map(_result, statements[1:]) if r is not None]


WORD = re.compile(r'[^\s()";=]+')


def _tokens(value: str) -> list[str]:
    """Words, "=" and ";", with comments skipped and quoted strings unquoted into words."""
    tokens, i = [], 0
    while i < len(value):
        char = value[i]
        if char == "(":
            i = _comment_end(value, i)
        elif char == '"':
            word, i = _quoted(value, i)
            tokens.append(word)
        elif char in "=;":
            tokens.append(char)
            i += 1
        elif char.isspace() or char == ")":  # a stray ")" closes nothing
            i += 1
        else:
            word = WORD.match(value, i).group()
            tokens.append(word)
            i += len(word)
    return tokens


def _comment_end(value: str, i: int) -> int:
    depth = 0
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        depth += {"(": 1, ")": -1}.get(value[i], 0)
        i += 1
        if depth == 0:
            break
    return i


def _quoted(value: str, i: int) -> tuple[str, int]:
    word, i = [], i + 1
    while i < len(value) and value[i] != '"':
        if value[i] == "\\" and i + 1 < len(value):
            i += 1
        word.append(value[i])
        i += 1
    return "".join(word), i + 1


def _statements(tokens: list[str]) -> list[list[str]]:
    statements: list[list[str]] = [[]]
    for token in tokens:
        if token == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    return statements


def _result(tokens: list[str]) -> AuthResult | None:
    """`method[/version] = result [reason = value] [ptype.property = value ...]`."""
    pairs = [
        (tokens[i], tokens[i + 2])
        for i in range(len(tokens) - 2)
        if tokens[i + 1] == "=" and tokens[i] != "=" and tokens[i + 2] != "="
    ]
    if not pairs or tokens[1:2] != ["="]:
        return None  # "none", or not a result at all
    method, result = pairs[0]
    properties = {key.lower(): val for key, val in pairs[1:]}
    return AuthResult(method.split("/")[0].lower(), result.lower(), properties)


AUTO_REPLY = "auto_reply"
AUTO_GENERATED = "auto_generated"
DSN = "dsn"
BULK = "bulk"
DAEMONS = ("mailer-daemon", "postmaster")


def ignored_reason(parsed: Parsed) -> str | None:
    """Why the message is mail no person wrote to us (never answered, never a claim), or None.

    Checked from the most specific reason to the least, the first that applies wins: a bounce
    is `dsn` even though it also carries Auto-Submitted.
    """
    auto_submitted = [_keyword(value) for value in parsed.header_all("Auto-Submitted")]
    precedence = {_keyword(value) for value in parsed.header_all("Precedence")}
    local_part = (parsed.from_address or "").rpartition("@")[0].lower()
    rules = (
        (DSN, parsed.content_type == "multipart/report" and parsed.report_type == "delivery-status"),
        (DSN, local_part in DAEMONS),
        (AUTO_REPLY, "auto-replied" in auto_submitted or "auto_reply" in precedence),
        (AUTO_REPLY, parsed.header("X-Autoreply") is not None or parsed.header("X-Autorespond") is not None),
        (AUTO_GENERATED, any(value != "no" for value in auto_submitted)),
        (BULK, bool(precedence & {"bulk", "list", "junk"})),
        (BULK, parsed.header("List-Id") is not None or parsed.header("List-Unsubscribe") is not None),
        (DSN, any(re.sub(r"\s", "", v) == "<>" for v in parsed.header_all("Return-Path")[:1])),
    )
    return next((reason for reason, applies in rules if applies), None)


def _keyword(value: str) -> str:
    """The keyword of a header such as `Auto-Submitted: auto-replied (vacation); owner=x`."""
    found = re.match(r"\s*([A-Za-z0-9_.-]*)", value)
    return found.group(1).lower()


LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")
UNSAFE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")


def header_safe(value: str | None) -> str:
    """A value from a message made fit for an outgoing header: no line breaks (which would let
    it add headers of its own), no other control characters, blanks collapsed."""
    value = UNSAFE.sub("", LINE_BREAKS.sub(" ", value or ""))
    return re.sub(r"[ \t]+", " ", value).strip()
