import time

from claims.inbound import html_to_text, new_text, unflow


def test_html_text_leaves_out_script_style_comments_and_head():
    html = (
        "<html><head><title>T 1</title><style>p{}</style></head><body><!-- hidden 2 -->"
        "<script>var x = 'hidden 3'</script><p>Visible <b>bold</b>&nbsp;text</p><div>next</div></body></html>"
    )

    assert html_to_text(html) == "Visible bold\xa0text\nnext"


def test_html_conditional_comment_is_a_comment():
    assert html_to_text("<p>a</p><!--[if mso]><p>order 333333</p><![endif]--><p>b</p>") == "a\nb"


def test_html_unclosed_comment_hides_the_rest():
    assert html_to_text("<p>a</p><!-- never closed <p>b</p>") == "a"


def test_html_blockquote_becomes_quoted_lines():
    html = "<div>new</div><blockquote><div>old 1</div><blockquote>older</blockquote></blockquote><div>after</div>"

    assert html_to_text(html) == "new\n> old 1\n> > older\nafter"


def test_html_line_breaks_and_cells():
    assert html_to_text("a<br>b<table><tr><td>1</td><td>2</td></tr></table>") == "a\nb\n1 2"


def test_html_pre_keeps_its_line_breaks_and_inner_spacing():
    assert html_to_text("<pre>a  b\n  c</pre>") == "a  b\nc"


def test_html_deeply_nested_is_read_without_a_tree_and_quickly():
    html = "<div>" * 200000 + "deep <script>hidden</script><!-- hidden -->" + "</div>" * 200000

    started = time.monotonic()
    text = html_to_text(html)

    assert text == "deep"
    assert time.monotonic() - started < 2


def test_html_nested_as_deep_as_real_mail_keeps_its_quotes():
    html = "<blockquote>" * 40 + "old" + "</blockquote>" * 40

    assert html_to_text(html) == "> " * 40 + "old"


def test_html_empty_and_garbage():
    assert html_to_text("") == ""
    assert html_to_text("<<<>>>&&&;") == "<<<>>>&&&;"


def test_unflow_joins_soft_breaks():
    assert unflow("My withdrawal \r\n5105 was returned.\r\nNext line", delsp=False) == (
        "My withdrawal 5105 was returned.\nNext line"
    )


def test_unflow_delsp_removes_the_added_space():
    assert unflow("abc\ndef \nghi", delsp=True) == "abc\ndefghi"


def test_unflow_removes_space_stuffing_and_keeps_the_signature_separator():
    assert unflow(" From the app\n-- \nBruno", delsp=False) == "From the app\n-- \nBruno"


def test_unflow_joins_only_within_one_quote_depth():
    assert unflow("> quoted \n> more\nnew", delsp=False) == "> quoted more\nnew"


def test_reply_keeps_only_the_new_text_under_an_english_attribution():
    text = "Also order 5550002.\n\nOn Thu, Jul 3, 2025 at 2:10 PM Support <\nsupport@x.example> wrote:\n\n> old 1\n"

    assert new_text(text) == "Also order 5550002."


def test_reply_bottom_posted_keeps_text_below_the_quote():
    text = "On Thu, Jul 3, 2025, Support <s@x> wrote:\n> question?\n\nmy answer\n> second?\nsecond answer"

    assert new_text(text) == "my answer\nsecond answer"


def test_reply_chinese_attribution():
    text = "补充说明。\n\nClaimdesk <s@x> 于2025年7月3日周四 22:00写道：\n> 旧内容"

    assert new_text(text) == "补充说明。"


def test_reply_portuguese_attribution():
    text = "O saque não voltou.\n\nEm qui., 3 de jul. de 2025 às 15:20, Suporte <s@x> escreveu:\n> antigo"

    assert new_text(text) == "O saque não voltou."


def test_reply_outlook_block_without_quote_marks_is_cut():
    text = (
        "Thanks.\n\n________________________________\nFrom: Support <s@x>\nSent: Thursday, July 3, 2025\n"
        "To: me\nSubject: Your claim\n\nOld text 9999"
    )

    assert new_text(text) == "Thanks."


def test_reply_outlook_original_message_separator_is_cut():
    text = "New.\n\n-----Original Message-----\nFrom: a@x\nSent: today\nSubject: RE: x\n\nOld 9999"

    assert new_text(text) == "New."


def test_reply_chinese_outlook_block_is_cut():
    text = "新内容\n\n发件人: Support <s@x>\n发送时间: 2025年7月3日 16:00\n主题: 回复: 申请\n\n旧内容"

    assert new_text(text) == "新内容"


def test_forward_keeps_the_forwarded_text_without_its_headers():
    text = (
        "See below.\n\n---------- Forwarded message ---------\nFrom: B <b@x>\nDate: Thu, Jul 3\n"
        "Subject: withdrawal\nTo: <me@x>\n\nWithdrawal 5106 was cancelled.\n"
    )

    assert new_text(text) == "See below.\n\nWithdrawal 5106 was cancelled."


def test_apple_forward_is_unquoted_and_kept():
    text = (
        "FYI\n\nBegin forwarded message:\n\n> From: B <b@x>\n> Subject: hi\n> Date: today\n>\n> Trade 982069 was bad."
    )

    assert new_text(text) == "FYI\n\nTrade 982069 was bad."


def test_outlook_forward_is_told_from_a_reply_by_its_subject():
    text = "FYI\n\nFrom: B <b@x>\nSent: Thursday\nTo: me\nSubject: FW: liquidation\n\nLiquidated, trade 982069."

    assert new_text(text) == "FYI\n\nLiquidated, trade 982069."


def test_forwarded_message_own_quotes_are_dropped():
    text = (
        "---------- Mensagem encaminhada ---------\nDe: B <b@x>\nData: hoje\nAssunto: x\n\n"
        "Saque 5104 falhou.\n\nEm qui., 3 de jul. de 2025, C <c@x> escreveu:\n> antigo 1234\n"
    )

    assert new_text(text) == "Saque 5104 falhou."


def test_a_line_starting_with_on_is_not_an_attribution():
    text = "On July 3 I was liquidated.\nOn SOL-PERP, trade 982069."

    assert new_text(text) == text


def test_new_text_handles_a_35000_character_line_quickly():
    line = "On " + "x" * 35000

    assert new_text(line + "\nwrote:") == line + "\nwrote:"


def test_html_gmail_reply_keeps_only_the_new_text():
    html = (
        '<div dir="ltr">Also order 5550002.</div><br><div class="gmail_quote"><div class="gmail_attr">'
        "On Thu, Jul 3, 2025 at 2:10 PM Support &lt;s@x&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote">We received your claim about trade 982069.</blockquote></div>'
    )

    assert new_text(html_to_text(html)) == "Also order 5550002."


def test_html_outlook_reply_keeps_only_the_new_text():
    html = (
        '<div>Thanks.</div><hr><div id="divRplyFwdMsg"><b>From:</b> Support &lt;s@x&gt;<br>'
        "<b>Sent:</b> Thursday, July 3, 2025<br><b>Subject:</b> Your claim</div><div>Old 9999</div>"
    )

    assert new_text(html_to_text(html)) == "Thanks."
