import base64

from claims.inbound import decode_words, normalise_address, parse


def test_plain_message_reads_sender_subject_ids_and_text():
    raw = (
        b'From: "Ana" <user100056@Example.COM>\nSubject: Hello\nMessage-ID: <m1@x>\n'
        b"In-Reply-To: <ack@claimdesk.example>\nReferences: <c1@x>\n <ack@claimdesk.example>\n\nI was liquidated.\n"
    )

    parsed = parse(raw)

    assert parsed.is_parseable
    assert (parsed.from_address, parsed.from_name, parsed.subject) == ("user100056@example.com", "Ana", "Hello")
    assert (parsed.message_id, parsed.in_reply_to, parsed.references) == (
        "m1@x",
        ("ack@claimdesk.example",),
        ("c1@x", "ack@claimdesk.example"),
    )
    assert parsed.thread_ids == ("ack@claimdesk.example", "c1@x")
    assert parsed.text == "I was liquidated."


def test_rfc2047_words_splitting_a_character_are_joined_before_decoding():
    word = "强平".encode()
    raw = (
        f"From: x@example.com\nSubject: =?UTF-8?B?{base64.b64encode(word[:2]).decode()}?=\n"
        f" =?UTF-8?B?{base64.b64encode(word[2:]).decode()}?= ok\n\nbody\n"
    ).encode()

    assert parse(raw).subject == "强平 ok"


def test_decode_words_reads_raw_utf8_and_mixed_charsets():
    assert decode_words("=?iso-8859-1?Q?Jo=E3o?= Souza") == "João Souza"
    assert decode_words("=?gb2312?B?" + base64.b64encode("王喆".encode("gbk")).decode() + "?=") == "王喆"
    assert decode_words("Ol\udcc3\udca1") == "Olá"  # raw UTF-8 bytes as the parser hands them over
    assert decode_words("=?UTF-8?B?not base64!?=") == "=?UTF-8?B?not base64!?="


def test_alternative_prefers_the_plain_text_and_keeps_the_html_forms_images():
    raw = (
        b'From: x@example.com\nContent-Type: multipart/alternative; boundary="a"\n\n--a\n'
        b"Content-Type: text/plain\n\nplain words\n--a\n"
        b'Content-Type: multipart/related; boundary="r"\n\n--r\nContent-Type: text/html\n\n<p>html words</p>\n'
        b"--r\nContent-Type: image/png\nContent-ID: <i1@x>\nContent-Transfer-Encoding: base64\n\niVBORw==\n"
        b"--r--\n--a--\n"
    )

    parsed = parse(raw)

    assert parsed.text == "plain words"
    assert [(a.content_type, a.is_inline, a.content_id, a.content) for a in parsed.attachments] == [
        ("image/png", True, "i1@x", b"\x89PNG")
    ]


def test_alternative_with_an_empty_plain_part_reads_the_html():
    raw = (
        b'From: x@example.com\nContent-Type: multipart/alternative; boundary="a"\n\n--a\n'
        b"Content-Type: text/plain\n\n \n--a\nContent-Type: text/html\n\n<p>html words</p>\n--a--\n"
    )

    assert parse(raw).text == "html words"


def test_rfc2231_file_name_with_continuations():
    raw = (
        b'From: x@example.com\nContent-Type: multipart/mixed; boundary="m"\n\n--m\nContent-Type: text/plain\n\n'
        b"see file\n--m\nContent-Type: application/pdf\nContent-Disposition: attachment;\n"
        b" filename*0*=UTF-8''%E6%88%90%E4%BA%A4; filename*1*=%E8%AE%B0%E5%BD%95.pdf\n\n%PDF\n--m--\n"
    )

    (attachment,) = parse(raw).attachments

    assert (attachment.filename, attachment.content_type, attachment.size) == ("成交记录.pdf", "application/pdf", 4)
    assert attachment.export() == {"filename": "成交记录.pdf", "contentType": "application/pdf", "size": 4}


def test_a_text_file_attached_is_an_attachment_not_body_text():
    raw = (
        b'From: x@example.com\nContent-Type: multipart/mixed; boundary="m"\n\n--m\nContent-Type: text/plain\n\n'
        b"body\n--m\nContent-Type: text/plain; name=log.txt\nContent-Disposition: attachment\n\ntrade 1\n--m--\n"
    )

    parsed = parse(raw)

    assert parsed.text == "body"
    assert [a.filename for a in parsed.attachments] == ["log.txt"]


def test_a_broken_attachment_is_kept_as_received():
    raw = (
        b'From: x@example.com\nContent-Type: multipart/mixed; boundary="m"\n\n--m\nContent-Type: text/plain\n\n'
        b"body\n--m\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBER!!**\n--m--\n"
    )

    (attachment,) = parse(raw).attachments

    assert attachment.is_broken
    assert attachment.content == b"JVBER!!**"


def test_forwarded_message_text_counts_but_its_headers_do_not():
    raw = (
        b'From: user100056@example.com\nMessage-ID: <outer@x>\nContent-Type: multipart/mixed; boundary="m"\n\n'
        b"--m\nContent-Type: text/plain\n\nsee attached\n--m\nContent-Type: message/rfc822\n\n"
        b"From: other@example.com\nMessage-ID: <inner@x>\nIn-Reply-To: <c1@x>\n\nforwarded words\n--m--\n"
    )

    parsed = parse(raw)

    assert parsed.text == "see attached\n\nforwarded words"
    assert (parsed.message_id, parsed.thread_ids, parsed.from_address) == ("outer@x", (), "user100056@example.com")


def test_multipart_without_boundary_is_unparseable_but_keeps_sender_and_subject():
    raw = b"From: user100056@example.com\nSubject: hi\nContent-Type: multipart/mixed\n\n--x\n\nliquidated\n--x--\n"

    parsed = parse(raw)

    assert not parsed.is_parseable
    assert (parsed.from_address, parsed.subject, parsed.text) == ("user100056@example.com", "hi", "")
    assert any("boundary" in problem for problem in parsed.problems)


def test_a_file_cut_inside_its_headers_is_unparseable():
    for raw in (
        b"From: user100056@example.com\nSubject: hi\nContent-Ty",
        b"From: user100056@example.com\nSubject: hi\n",
        b"From: user100056@example.com\nSubject: hi\nnot a header line\n\nbody",
    ):
        parsed = parse(raw)

        assert not parsed.is_parseable
        assert parsed.from_address == "user100056@example.com"


def test_a_base64_encoded_multipart_is_decoded_and_read():
    inner = b"--b\nContent-Type: text/plain\n\nliquidated\n--b--\n"
    raw = (
        b'From: x@example.com\nContent-Type: multipart/mixed; boundary="b"\nContent-Transfer-Encoding: base64\n\n'
        + base64.encodebytes(inner)
    )

    parsed = parse(raw)

    assert parsed.is_parseable
    assert parsed.text == "liquidated"


def test_a_message_with_only_an_image_has_no_readable_text():
    raw = b"From: x@example.com\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw==\n"

    parsed = parse(raw)

    assert not parsed.is_parseable
    assert [a.content_type for a in parsed.attachments] == ["image/png"]


def test_an_empty_plain_body_is_readable_and_empty():
    parsed = parse(b"From: x@example.com\nSubject: only a subject\n\n")

    assert parsed.is_parseable
    assert parsed.text == ""


def test_text_has_no_nul_or_control_characters():
    parsed = parse(b"From: x@example.com\nSubject: a\x00b\n\nline\x00one\x07\r\nline two\n")

    assert parsed.text == "lineone\nline two"
    assert parsed.subject == "ab"


def test_header_values_are_unfolded():
    parsed = parse(b"From: x@example.com\nX-Long: one\n two\n\nbody\n")

    assert parsed.header("x-long") == "one two"
    assert parsed.header_all("X-Missing") == []


def test_nesting_deeper_than_real_mail_is_not_read_and_does_not_fail():
    raw = (
        b"From: x@example.com\n"
        + b"".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'.encode() for i in range(60))
        + b"Content-Type: text/plain\n\ndeep\n"
    )

    parsed = parse(raw)

    assert not parsed.is_parseable
    assert any("nested" in problem for problem in parsed.problems)


def test_normalise_address():
    assert normalise_address(" Local.Part@Example.COM. ") == "Local.Part@example.com"
    assert normalise_address("@example.com") is None
    assert normalise_address("user@") is None
    assert normalise_address(None) is None


def test_when_the_parser_itself_fails_the_headers_are_still_salvaged(monkeypatch):
    from claims.inbound import mime

    def fail(raw):
        raise RecursionError("deep")

    monkeypatch.setattr(mime.PARSER, "parsebytes", fail)
    raw = (
        b"Authentication-Results: mx.claimdesk.example; dmarc=pass header.from=example.com\r\n"
        b"From: Ana <user100056@Example.com>\r\nSubject: =?UTF-8?Q?Ol=C3=A1?=\r\n"
        b"Message-ID: <m1@x>\r\nContent-Type: multipart/report;\r\n report-type=delivery-status\r\n\r\nbody"
    )

    parsed = parse(raw)

    assert not parsed.is_parseable
    assert (parsed.from_address, parsed.subject, parsed.message_id) == ("user100056@example.com", "Olá", "m1@x")
    assert (parsed.content_type, parsed.report_type) == ("multipart/report", "delivery-status")
    assert parsed.problems == ("parser failed: RecursionError",)
