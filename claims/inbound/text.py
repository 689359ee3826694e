"""The visible text of a message: HTML made plain, format=flowed undone, and for a reply only
what the writer added (quoted lines and the earlier message below an attribution removed),
while a forwarded message's text is kept.

HTML is read with selectolax (the Lexbor engine: the WHATWG parsing algorithm, in linear
time), so what counts as a comment, a script or a style is what a mail client decides, and a
hostile document cannot make parsing slow. Python 3.11's html.parser has neither property
(its comment handling predates the 2025 fixes, and some malformed input is quadratic).
"""

import re
from html import unescape

from selectolax.lexbor import LexborHTMLParser

HIDDEN = {"script", "style", "template", "head", "title"}
BLOCKS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "tr",
    "ul",
}
CELLS = {"td", "th"}
# Private-use characters mark where a blockquote starts and ends until lines get their "> ".
QUOTE_START, QUOTE_END = "\ue000", "\ue001"
HTML_SPACE = re.compile(r"[ \t\r\n\f]+")


MAX_NESTING = 5000  # browsers stop nesting at 512; far deeper is an attack on the parser
TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
NOT_SHOWN = re.compile(r"<!--.*?(?:-->|\Z)|<(script|style|template|head|title)\b.*?(?:</\1\s*>|\Z)", re.S | re.I)


def html_to_text(html: str) -> str:
    """The text a reader sees, a blockquote's lines prefixed with "> " as a plain client quotes."""
    html = html.replace(QUOTE_START, "").replace(QUOTE_END, "")
    if _nesting(html) > MAX_NESTING:
        return _stripped(html)
    root = LexborHTMLParser(html).root
    if root is None:
        return ""
    pieces: list[str] = []
    in_pre = 0
    stack = [(root, False)]  # iterative: a deeply nested document must not exhaust the stack
    while stack:
        node, leaving = stack.pop()
        tag = node.tag
        if leaving:
            in_pre -= tag == "pre"
            pieces.append(f"\n{QUOTE_END}\n" if tag == "blockquote" else "\n")
            continue
        if tag == "-text":
            text = node.text_content or ""
            pieces.append(text if in_pre else HTML_SPACE.sub(" ", text))
            continue
        if tag in HIDDEN or tag.startswith(("-", "!")):
            continue  # comments, doctype, and what no reader sees
        pieces.append(_opening(tag))
        in_pre += tag == "pre"
        if tag in BLOCKS:
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
    return _quoted_lines("".join(pieces))


def _nesting(html: str) -> int:
    """How deep the tags nest, about (unclosed <p> and <li> count too): tree building costs
    time with the square of the depth, so a hostile depth is read without a tree."""
    depth = deepest = 0
    for match in TAG.finditer(html):
        if match.group(2).lower() not in VOID:
            depth += -1 if match.group(1) else 1
            deepest = max(deepest, depth)
    return deepest


def _stripped(html: str) -> str:
    text = re.sub(r"<[^<>]*>", "\n", NOT_SHOWN.sub(" ", html))  # [^<>]: linear even where no ">" comes
    return "\n".join(line for line in (" ".join(x.split()) for x in unescape(text).split("\n")) if line)


def _opening(tag: str) -> str:
    if tag == "blockquote":
        return f"\n{QUOTE_START}\n"
    if tag in BLOCKS:
        return "\n"
    return " " if tag in CELLS else ""


def _quoted_lines(text: str) -> str:
    lines, depth = [], 0
    for line in text.split("\n"):
        if line == QUOTE_START or line == QUOTE_END:
            depth += 1 if line == QUOTE_START else -1
            continue
        line = line.strip(" ")
        if line:  # blank lines in HTML are layout, not text
            lines.append("> " * depth + line)
    return "\n".join(lines)


def tidy(text: str) -> str:
    """Lines without trailing blanks, at most one empty line in a row, none at either end."""
    # Line by line: a regex over "[ \t]+\n" would rescan a long run of blanks from each blank.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip(" \t") for line in lines)).strip("\n")


def unflow(text: str, delsp: bool) -> str:
    """RFC 3676: join the lines a sender's client broke for transport (a line ending in a space
    continues on the next line of the same quote depth)."""
    out: list[str] = []
    pending: tuple[int, str] | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        body = body[1:] if body.startswith(" ") else body  # space-stuffing
        flowed = body.endswith(" ") and body != "-- "
        if pending is not None:
            if pending[0] == depth:
                body = pending[1] + body
            else:
                out.append(_flowed_line(*pending))
        if flowed:
            pending = (depth, body[:-1] if delsp else body)
        else:
            out.append(_flowed_line(depth, body))
            pending = None
    if pending is not None:
        out.append(_flowed_line(*pending))
    return "\n".join(out)


def _flowed_line(depth: int, body: str) -> str:
    return "> " * depth + body if depth else body


# What starts the earlier message in a reply, in the languages we support.
ATTRIBUTION = re.compile(
    r"\s*(?:On\s.{1,300}?\swrote|Em\s.{1,300}?\sescreveu|在.{1,300}?写道|.{1,300}?于\s*[0-9]{4}.{1,100}?写道)"
    r"\s*[:：]\s*",
    re.I | re.S,
)
ATTRIBUTION_START = re.compile(r"\s*(?:On\s|Em\s|在)|.*于\s*[0-9]{4}", re.I)
SEPARATOR = re.compile(
    r"\s*-{2,}\s*(?P<what>original message|mensagem original|原始邮件|forwarded message|"
    r"mensagem encaminhada|转发的邮件|已转发邮件)\s*-{2,}\s*",
    re.I,
)
FORWARD_WORDS = re.compile(r"forward|encaminhada|转发", re.I)
FORWARD_INTRO = re.compile(
    r"\s*(?:begin forwarded message|in[íi]cio da mensagem encaminhada|以下为转发的邮件|开始转发的邮件)"
    r"\s*[:：]\s*",
    re.I,
)
HEADER_FROM = re.compile(r"\s*\*?(?:From|De|发件人|寄件人|寄件者)\s*\*?\s*[:：]", re.I)
HEADER_DATE = re.compile(r"\s*\*?(?:Sent|Date|Enviado|Enviada em|Data|发送时间|时间|日期)\s*\*?\s*[:：]", re.I)
HEADER_SUBJECT = re.compile(r"\s*\*?(?:Subject|Assunto|主题|主旨)\s*\*?\s*[:：]\s*(?P<value>.*)", re.I)
FORWARD_SUBJECT = re.compile(r"(?:fwd?|enc|tr|rv|转发|轉寄)\s*[:：]", re.I)
HEADER_LINE = re.compile(r"\s*\*?[^\s:：][^:：]{0,30}\*?\s*[:：]")


def new_text(text: str) -> str:
    """What the writer added: their own lines and any forwarded message, not what they quoted."""
    lines = text.split("\n")
    for i in range(len(lines)):
        marker, end = _marker(lines, i)
        if marker == "attribution" and _next_is_quoted(lines, end + 1):
            lines[i : end + 1] = [""] * (end + 1 - i)  # quoted below: the ">" rule drops it
        elif marker in ("attribution", "reply"):
            return _unquoted(lines[:i])
        elif marker == "forward":
            start = end + 1 if not HEADER_FROM.match(lines[i]) else i
            forwarded = _skip_headers([_unquote_once(line) for line in lines[start:]])
            return tidy(_unquoted(lines[:i]) + "\n\n" + new_text("\n".join(forwarded)))
    return _unquoted(lines)


def _marker(lines: list[str], i: int) -> tuple[str | None, int]:
    line = lines[i]
    if SEPARATOR.fullmatch(line):
        what = SEPARATOR.fullmatch(line).group("what")
        forward = FORWARD_WORDS.search(what) or _forward_subject(lines, i + 1)
        return ("forward" if forward else "reply"), i
    if FORWARD_INTRO.fullmatch(line):
        return "forward", i
    if HEADER_FROM.match(line) and any(HEADER_DATE.match(x) for x in lines[i + 1 : i + 5]):
        return ("forward" if _forward_subject(lines, i) else "reply"), i
    if ATTRIBUTION_START.match(line):
        for end in range(i, min(i + 3, len(lines))):
            if ATTRIBUTION.fullmatch(" ".join(lines[i : end + 1])):
                return "attribution", end
    return None, i


def _forward_subject(lines: list[str], start: int) -> bool:
    for line in lines[start : start + 8]:
        subject = HEADER_SUBJECT.match(line)
        if subject:
            return bool(FORWARD_SUBJECT.match(subject.group("value")))
    return False


def _next_is_quoted(lines: list[str], start: int) -> bool:
    following = next((line for line in lines[start:] if line.strip()), "")
    return following.lstrip().startswith(">")


def _unquoted(lines: list[str]) -> str:
    kept = [line for line in lines if not line.lstrip().startswith(">")]
    while kept and set(kept[-1].strip()) <= set("_-"):
        kept.pop()  # the rule a client draws above the earlier message
    return tidy("\n".join(kept))


def _unquote_once(line: str) -> str:
    stripped = line.lstrip()
    if not stripped.startswith(">"):
        return line
    return stripped[2:] if stripped.startswith("> ") else stripped[1:]


def _skip_headers(lines: list[str]) -> list[str]:
    """The forwarded message without its From/Date/Subject/To block."""
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    while i < len(lines) and lines[i].strip() and (HEADER_LINE.match(lines[i]) or lines[i][:1] in " \t"):
        i += 1
    return lines[i:]
