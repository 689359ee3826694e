from claims.inbound import authentication_results, header_safe, ignored_reason, parse, same_address, sender_verified

OURS = "mx.claimdesk.example"


def message(*headers: str, sender: str = "user100056@example.com", body: str = "Hello") -> bytes:
    return ("\n".join([*headers, f"From: {sender}", "Subject: s", "", body]) + "\n").encode()


def test_authentication_results_reads_comments_quotes_and_statements():
    value = (
        'mx.claimdesk.example 1; spf=pass (sender (nested) ok; really) smtp.mailfrom="a@example.com";\n'
        " dkim=pass header.d=example.com; dmarc/1=pass (p=none) header.from=Example.com"
    )

    server, results = authentication_results(value)

    assert server == "mx.claimdesk.example"
    assert [(r.method, r.result) for r in results] == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert results[0].properties == {"smtp.mailfrom": "a@example.com"}
    assert results[2].properties == {"header.from": "Example.com"}


def test_authentication_results_none_and_garbage():
    assert authentication_results("mx.claimdesk.example; none") == ("mx.claimdesk.example", [])
    assert authentication_results("") == (None, [])
    assert authentication_results("(unclosed comment; dmarc=pass")[1] == []
    assert authentication_results('"quoted id"; dmarc=pass header.from=x')[0] == "quoted id"


def test_verified_by_our_dmarc_pass_for_the_from_domain():
    raw = message(f"Authentication-Results: {OURS}; dmarc=pass header.from=example.com")

    assert sender_verified(parse(raw), OURS)
    assert sender_verified(parse(raw), "MX.ClaimDesk.Example")


def test_not_verified_without_authentication_results():
    assert not sender_verified(parse(message()), OURS)


def test_not_verified_by_another_servers_pass():
    raw = message("Authentication-Results: mx.attacker.example; dmarc=pass header.from=example.com")

    assert not sender_verified(parse(raw), OURS)


def test_only_the_topmost_of_ours_counts():
    raw = message(
        f"Authentication-Results: {OURS}; dmarc=fail header.from=example.com",
        f"Authentication-Results: {OURS}; dmarc=pass header.from=example.com",
    )

    assert not sender_verified(parse(raw), OURS)


def test_a_foreign_header_above_ours_is_skipped_and_ours_decides():
    raw = message(
        "Authentication-Results: relay.example; dmarc=fail header.from=example.com",
        f"Authentication-Results: {OURS}; dmarc=pass header.from=example.com",
    )

    assert sender_verified(parse(raw), OURS)


def test_a_pass_for_another_domain_proves_nothing():
    raw = message(f"Authentication-Results: {OURS}; dmarc=pass header.from=attacker.example")

    assert not sender_verified(parse(raw), OURS)


def test_a_pass_without_header_from_proves_nothing():
    assert not sender_verified(parse(message(f"Authentication-Results: {OURS}; dmarc=pass")), OURS)


def test_a_pass_in_a_comment_proves_nothing():
    raw = message(
        f"Authentication-Results: {OURS}; dmarc=fail (dmarc=pass header.from=example.com) header.from=example.com"
    )

    assert not sender_verified(parse(raw), OURS)


def test_verified_with_the_from_domain_in_another_case():
    raw = message(
        f"Authentication-Results: {OURS}; dmarc=pass header.from=example.com", sender="user100056@EXAMPLE.COM"
    )

    assert sender_verified(parse(raw), OURS)


def test_an_empty_authserv_id_verifies_nothing():
    raw = message("Authentication-Results: ; dmarc=pass header.from=example.com")

    assert not sender_verified(parse(raw), "")


def test_several_from_addresses_leave_the_sender_unknown_and_unverified():
    raw = message(
        f"Authentication-Results: {OURS}; dmarc=pass header.from=example.com",
        sender="user100056@example.com, user100057@example.com",
    )

    parsed = parse(raw)

    assert parsed.from_address is None
    assert not sender_verified(parsed, OURS)


def test_two_from_headers_leave_the_sender_unknown():
    raw = message("From: user100057@example.com")

    assert parse(raw).from_address is None


def test_addresses_compare_domain_case_insensitive_local_part_as_is():
    assert same_address("user100056@EXAMPLE.com", "user100056@example.com")
    assert not same_address("User100056@example.com", "user100056@example.com")
    assert not same_address(None, None)
    assert not same_address("no-at-sign", "no-at-sign")


def test_ignored_reasons_map_each_marker():
    cases = {
        "Auto-Submitted: auto-replied": "auto_reply",
        "Auto-Submitted: auto-replied (vacation)": "auto_reply",
        "Auto-Submitted:": "auto_generated",
        "Auto-Submitted: Auto-Generated; owner-email=x@y": "auto_generated",
        "Auto-Submitted: auto-notified": "auto_generated",
        "X-Autoreply: yes": "auto_reply",
        "X-Autorespond: vacation": "auto_reply",
        "Precedence: auto_reply": "auto_reply",
        "Precedence: bulk": "bulk",
        "Precedence: LIST": "bulk",
        "Precedence: junk": "bulk",
        "Precedence: bulk (list)": "bulk",
        "List-Id: <traders.lists.example.com>": "bulk",
        "List-Unsubscribe: <mailto:x@y>": "bulk",
        "Return-Path: <>": "dsn",
        "Return-Path: < >": "dsn",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b": "dsn",
    }

    for header, reason in cases.items():
        assert ignored_reason(parse(message(header))) == reason, header


def test_daemon_senders_are_bounces():
    assert ignored_reason(parse(message(sender="MAILER-DAEMON@mx.example.net"))) == "dsn"
    assert ignored_reason(parse(message(sender="Postmaster <postmaster@example.com>"))) == "dsn"


def test_mail_a_person_wrote_is_not_ignored():
    assert (
        ignored_reason(
            parse(message("Auto-Submitted: no", "Precedence: first-class", "Return-Path: <user100056@example.com>"))
        )
        is None
    )
    assert (
        ignored_reason(
            parse(message("Content-Type: multipart/report; report-type=disposition-notification; boundary=b"))
        )
        is None
    )


def test_the_most_specific_reason_wins():
    raw = message("Auto-Submitted: auto-replied", "Return-Path: <>", "Precedence: bulk")

    assert ignored_reason(parse(raw)) == "auto_reply"


def test_ignored_reason_is_read_from_an_unparseable_message():
    parsed = parse(b"From: user100056@example.com\nAuto-Submitted: auto-replied\nContent-Type: multipart/mixed\n\nx")

    assert not parsed.is_parseable
    assert ignored_reason(parsed) == "auto_reply"


def test_header_safe_removes_line_breaks_and_controls():
    value = "Re: claim\r\nBcc: victim@example.com\u2028more\x00\x07\ttabbed  "

    assert header_safe(value) == "Re: claim Bcc: victim@example.com more tabbed"
    assert header_safe(None) == ""


def test_a_stray_closing_parenthesis_is_skipped():
    assert authentication_results("mx.claimdesk.example; ) dmarc=pass header.from=example.com")[1][0].result == "pass"
