"""Nothing a sender can put in a message makes the pure layer raise or crawl."""

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claims.inbound import extract, header_safe, html_to_text, ignored_reason, new_text, parse, sender_verified

from .corpus import AUTHSERV_ID, MARKETS, corpus_files

CORPUS = [path.read_bytes() for path in corpus_files() if path.stat().st_size < 20000]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_everything(raw: bytes) -> None:
    parsed = parse(raw)
    sender_verified(parsed, AUTHSERV_ID)
    ignored_reason(parsed)
    found = extract(parsed.text, MARKETS)
    header_safe(parsed.subject)
    assert isinstance(parsed.is_parseable, bool)
    assert all(isinstance(value, str) and isinstance(asset, str) for value, asset in found.amounts)
    assert "\x00" not in parsed.text + parsed.subject


@SETTINGS
@given(st.binary(max_size=4000))
def test_any_bytes_are_read_without_raising(raw):
    read_everything(raw)


@SETTINGS
@given(st.sampled_from(CORPUS), st.data())
def test_corpus_messages_cut_anywhere_are_read_without_raising(raw, data):
    cut = data.draw(st.integers(0, len(raw)))

    read_everything(raw[:cut])


@SETTINGS
@given(
    st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=0, max_size=8)), max_size=6)
)
def test_corpus_messages_with_bytes_spliced_in_are_read_without_raising(raw, splices):
    for position, inserted in splices:
        position %= len(raw) + 1
        raw = raw[:position] + inserted + raw[position + 1 :]

    read_everything(raw)


@SETTINGS
@given(st.text(max_size=2000))
def test_any_text_is_extracted_and_unquoted_without_raising(text):
    extract(text, MARKETS)
    new_text(text)
    html_to_text(text)
    assert "\n" not in header_safe(text) and "\r" not in header_safe(text)


def test_hostile_shapes_are_read_quickly():
    hostile = [
        b"From: x@example.com\nContent-Type: text/html\n\n" + b"<!--" * 100000,
        b"From: x@example.com\nContent-Type: text/html\n\n" + b"<a " * 100000,
        b"From: x@example.com\nContent-Type: text/html\n\n" + b"</" * 100000,
        b"From: x@example.com\n\n" + b"On " * 100000 + b"wrote:",
        b"From: x@example.com\n\n" + b"trade " * 50000,
        b"From: x@example.com\n\n" + b"1," * 100000 + b" USDC",
        b"From: x@example.com\n\n" + b"> " * 100000,
        b"From: x@example.com\n\n" + b"From: a\n" * 20000,
        b"From: x@example.com\n\n" + b"1" * 100000,
        b"Authentication-Results: " + b"(" * 100000 + b"\nFrom: x@example.com\n\nx",
        b"Authentication-Results: x;" + b" ;=" * 100000 + b"\nFrom: x@example.com\n\nx",
        b"From: x@example.com\n\ntrade" + b" " * 200000 + b"x",
        b"From: x@example.com\n\nx" + b"\t" * 200000 + b"y",
        b"From: x@example.com\nContent-Type: text/html\n\norder" + b"&nbsp;" * 200000 + b"x",
        b"From: x@example.com\nX-Many: y\n" * 50000 + b"\nx",
        b"From: x@example.com\nSubject: " + b"=?utf-8?q?a?= " * 200000 + b"\n\nx",
        b"From: " + b", ".join(b'"n%d" <a%d@x.example>' % (i, i) for i in range(50000)) + b"\n\nx",
    ]

    for raw in hostile:
        started = time.monotonic()
        read_everything(raw)
        assert time.monotonic() - started < 5, raw[:60]
