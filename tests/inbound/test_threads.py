from claims.inbound import normalise_message_id, referenced_ids


def test_message_id_loses_brackets_and_surrounding_blanks():
    assert normalise_message_id("  <claim-0001@example.com>  ") == "claim-0001@example.com"
    assert normalise_message_id("< claim-0001@example.com >") == "claim-0001@example.com"
    assert normalise_message_id(" claim-0001@example.com ") == "claim-0001@example.com"


def test_missing_or_empty_message_id_is_none():
    assert normalise_message_id(None) is None
    assert normalise_message_id("   ") is None
    assert normalise_message_id("<>") is None


def test_references_keep_order_and_drop_repeats():
    value = "<a@x> <b@y>\t<a@x>  <c@z>"

    assert referenced_ids(value) == ("a@x", "b@y", "c@z")


def test_in_reply_to_phrase_around_the_id_is_ignored():
    assert referenced_ids('<ack-1@claimdesk.example> (Support\'s message of "Thu, 3 Jul")') == (
        "ack-1@claimdesk.example",
    )


def test_ids_written_without_brackets_are_read_blank_separated():
    assert referenced_ids("a@x b@y") == ("a@x", "b@y")
    assert referenced_ids(None) == ()
