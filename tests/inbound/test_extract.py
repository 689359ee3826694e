from claims.inbound import extract

MARKETS = {"SOL_USDC", "BTC_USDC", "ETH_USDC", "USDT_USDC", "SOL_USDC_PERP", "BTC_USDC_PERP", "ETH_USDC_PERP"}


def amounts(text: str) -> list[list[str]]:
    return extract(text, MARKETS).export()["amounts"]


def test_amounts_keep_the_writers_precision_in_every_notation():
    assert amounts("I lost 104,000 USDC") == [["104000", "USDC"]]
    assert amounts("Perdi 104.000,00 USDC") == [["104000.00", "USDC"]]
    assert amounts("损失10万 USDT") == [["100000", "USDT"]]
    assert amounts("余额少了3.1万USDC") == [["31000", "USDC"]]
    assert amounts("Perdi US$ 104.000.") == [["104000", "USD"]]
    assert amounts("Perdi 7.800 € ontem") == [["7800", "EUR"]]
    assert amounts("lost 0.500 BTC and 1,5 SOL") == [["0.500", "BTC"], ["1.5", "SOL"]]
    assert amounts("lost 1234.5678 ETH") == [["1234.5678", "ETH"]]
    assert amounts("lost 104\u00a0000,50 USDC") == [["104000.50", "USDC"]]


def test_amounts_with_multipliers_and_currencies():
    assert amounts("lost 10k USDC, R$ 5.000,00 and 2 mil reais") == [
        ["2000", "BRL"],
        ["5000.00", "BRL"],
        ["10000", "USDC"],
    ]
    assert amounts("亏了5千美元和3万元") == [["5000", "USD"], ["30000", "CNY"]]
    assert amounts("about $1,250.75 or 1.2 million dollars") == [["1250.75", "USD"], ["1200000", "USD"]]


def test_amounts_are_sorted_by_value_and_without_repeats():
    assert amounts("500 USDC, then 20 SOL, then 500 USDC again, 500 usdc") == [["20", "SOL"], ["500", "USDC"]]


def test_prices_leverage_percentages_dates_and_ids_are_not_amounts():
    text = (
        "liquidated at 148.20 USDC, price: 150 USDC, SOL @ 151 USDC, 152 USDC/SOL, 153 USDC per SOL, "
        "以150 USDC的价格成交, preço de 149 USDC, 10x leverage, 20倍, 4%, on 2025-07-03, trade 982069, "
        "order 5550001, 200 SOL_USDC_PERP"
    )

    assert amounts(text) == []


def test_full_width_digits_typed_in_chinese_are_read():
    found = extract("损失１０万ＵＳＤＴ，成交编号：９８２０６９", MARKETS)

    assert found.amounts == (("100000", "USDT"),)
    assert found.trade_ids == (982069,)


def test_other_digit_scripts_are_not_numbers():
    found = extract("trade ٩٨٢٠٦٩ lost ١٠٠ USDC", MARKETS)

    assert (found.trade_ids, found.amounts) == ((), ())


def test_symbols_are_canonical_markets_and_bare_assets_are_not():
    text = "SOL-PERP, btc/usdc, ETH_USDC_PERP, BTC-USDC-PERP, SOLUSDC, ETH永续, BTC perpetual, SOL and USDT"

    assert extract(text, MARKETS).symbols == ("BTC_USDC", "BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC", "SOL_USDC_PERP")


def test_an_ambiguous_perp_names_no_market():
    markets = MARKETS | {"SOL_USDT_PERP"}

    assert extract("my SOL-PERP position", markets).symbols == ()
    assert extract("my SOL/USDT perp position", markets).symbols == ("SOL_USDT_PERP",)


def test_trade_ids_by_their_introducers_in_three_languages():
    text = (
        "trade 982069, trade id: 982070, trades 982071, 982072 and 982073, fill #982074, 成交编号：982075, "
        "ID da negociação 982076, negociação nº 982077"
    )

    assert extract(text, MARKETS).trade_ids == tuple(range(982069, 982078))


def test_order_ids_may_hold_letters_but_need_a_digit():
    text = "order 5550001, order ID: A7F3-99812, 订单号 77001, ordem de venda 8899001, in order to, order book"

    assert extract(text, MARKETS).order_ids == ("5550001", "77001", "8899001", "A7F3-99812")


def test_withdrawal_ids_and_not_deposit_ids():
    text = "withdrawal #5104, withdrawal request 5105, 提现编号5106, saque nº 5107, deposit 901, 充值 902, depósito 903"

    assert extract(text, MARKETS).withdrawal_ids == (5104, 5105, 5106, 5107)


def test_a_number_followed_by_a_unit_is_no_id():
    found = extract("withdrawal 500 USDC, order 300 SOL, trade 2025-07-03, trade 12.5", MARKETS)

    assert (found.withdrawal_ids, found.order_ids, found.trade_ids) == ((), (), ())


def test_transaction_hashes_and_not_wallet_addresses():
    evm_hash = "0x" + "Ab" * 32
    evm_address = "0x" + "cd" * 20
    bitcoin_txid = "e3" * 32
    solana_signature = "5" + "h" * 86  # base58 of 64 bytes
    solana_address = "9" * 44  # base58 of 32 bytes
    text = (
        f"tx {evm_hash}, to {evm_address}, txid {bitcoin_txid}, sig {solana_signature}, "
        f"wallet {solana_address}, sui address 0x{'ef' * 32}"
    )

    assert extract(text, MARKETS).tx_hashes == (evm_hash.lower(), solana_signature, bitcoin_txid)


def test_a_hash_inside_an_explorer_link_counts():
    text = f"https://etherscan.io/tx/0x{'12' * 32}"

    assert extract(text, MARKETS).tx_hashes == ("0x" + "12" * 32,)


def test_named_user_id_in_three_languages():
    for text in (
        "my account id is 100056",
        "UID: 100056",
        "账户ID 100056",
        "我的账号是100056",
        "minha conta 100056",
        "ID da conta: 100056",
        "Account #100056",
        "user id 100056",
    ):
        assert extract(text, MARKETS).named_user_id == 100056, text


def test_an_address_names_no_user_id():
    assert extract("write to user100057@example.com or user 100058.example.com", MARKETS).user_ids == ()


def test_two_named_user_ids_name_none():
    found = extract("my account 100056, my wife's account 100057", MARKETS)

    assert found.user_ids == (100056, 100057)
    assert found.named_user_id is None


def test_export_uses_the_bundle_field_names():
    found = extract("Liquidated on SOL-PERP, trade 982069, lost 5 SOL", MARKETS)

    assert found.export() == {
        "kind": "liquidation",
        "symbols": ["SOL_USDC_PERP"],
        "tradeIds": [982069],
        "orderIds": [],
        "withdrawalIds": [],
        "txHashes": [],
        "amounts": [["5", "SOL"]],
    }


def test_assets_may_be_given_beside_the_markets():
    assert extract("lost 3 DOGE", MARKETS).amounts == ()
    assert extract("lost 3 DOGE", MARKETS, assets={"DOGE"}).amounts == (("3", "DOGE"),)


def test_a_35000_character_line_is_read_quickly():
    text = "x1 " * 11666 + "trade 982077 lost 5 SOL"

    found = extract(text, MARKETS)

    assert (found.trade_ids, found.amounts) == ((982077,), (("5", "SOL"),))
