from claims.inbound.charsets import decode


def test_gb2312_label_reads_gbk_bytes_beyond_gb2312():
    data = "王喆 强平".encode("gbk")  # 喆 is not in GB2312

    assert decode(data, "gb2312") == "王喆 强平"


def test_iso_8859_1_label_reads_windows_1252_punctuation_and_euro():
    data = "“sumiu” – 7.800 €".encode("cp1252")

    assert decode(data, "ISO-8859-1") == "“sumiu” – 7.800 €"


def test_quoted_label_is_read():
    assert decode("ação".encode("cp1252"), '"iso-8859-1"') == "ação"


def test_unlabelled_utf8_is_read_as_utf8():
    assert decode("我的余额凭空少了".encode(), None) == "我的余额凭空少了"


def test_ascii_label_over_utf8_bytes_is_read_as_utf8():
    assert decode("Olá, saque".encode(), "us-ascii") == "Olá, saque"


def test_unknown_8bit_windows_1252_portuguese_is_guessed():
    text = (
        "Minha posição em ETH-PERP virou short sozinha depois da manutenção, sem nenhuma ação minha. "
        "Preciso de ajuda urgente, a situação é séria."
    )

    assert decode(text.encode("cp1252"), "unknown-8bit") == text


def test_unknown_8bit_gbk_chinese_is_guessed():
    text = "您好，我的账户在维护期间被强制平仓，仓位全部被清算，损失了大约十万。请尽快处理，谢谢。"

    assert decode(text.encode("gbk"), "unknown-8bit") == text


def test_unknown_label_is_guessed_instead_of_failing():
    assert decode("ação e saque".encode(), "x-no-such-charset") == "ação e saque"


def test_bytes_their_label_cannot_decode_fall_back_to_a_guess():
    assert decode("强平损失十万".encode(), "us-ascii") == "强平损失十万"
    assert decode("Olá, “saque”".encode("cp1252"), "utf-8") == "Olá, “saque”"


def test_undecodable_bytes_never_raise():
    data = bytes(range(256)) * 3

    assert isinstance(decode(data, "utf-8"), str)
    assert isinstance(decode(data, None), str)
