"""Hand-computed cases for every branch of every formula of the compensation policy."""

from decimal import Decimal

from claims import detectors as d

from .ledger_rows import (
    EVALUATION_END,
    MS,
    POLICY,
    TRADING_RESUMED,
    WINDOW_END,
    WINDOW_START,
    at,
    balance,
    context,
    deposit,
    entry,
    fill,
    ledger,
    position,
    withdrawal,
)

SOL_PERP_150 = {"SOL_USDC_PERP": [(at("10:59"), "150")]}


def owed(found):
    return {(x.kind, x.reference, x.asset): x.amount for x in found if x.is_owed}


# --- prices ---


def test_a_price_exactly_price_max_age_old_is_used_and_one_a_millisecond_older_is_not():
    prices = context({"SOL_USDC_PERP": [(at("10:55"), "150")]}).prices

    assert prices.at("SOL_USDC_PERP", at("11:00")).value == Decimal("150")
    assert prices.at("SOL_USDC_PERP", at("11:00") + MS) is None
    assert prices.at("SOL_USDC_PERP", at("10:55") - MS) is None  # nothing at or before


def test_the_mark_price_is_used_when_the_incident_says_so():
    policy = d.Policy(WINDOW_START, TRADING_RESUMED, WINDOW_END, EVALUATION_END, "mark", 300, 50)
    ctx = context(SOL_PERP_150, policy=policy)  # mark = index + 1 = 151
    liquidated = fill(price="140", quantity="10", fee="7", system_order_type="LiquidatePositionOnBook")

    found = d.detect_liquidations(ledger(fills=[liquidated]), ctx)

    assert owed(found) == {("liquidation", "fill:1:Ask", "USDC"): Decimal("117.000000")}


# --- liquidation ---


def test_liquidation_of_a_long_sold_below_the_index_owes_the_slippage_plus_the_fee():
    liquidated = fill(side="Ask", price="140", quantity="10", fee="7", system_order_type="LiquidatePositionOnBook")

    found = d.detect_liquidations(ledger(fills=[liquidated]), context(SOL_PERP_150))

    # (150 - 140) * 10 * (+1) + 7
    assert owed(found) == {("liquidation", "fill:1:Ask", "USDC"): Decimal("107.000000")}
    assert found[0].inputs["reference_price"] == {
        "symbol": "SOL_USDC_PERP",
        "price": "150",
        "at": "2025-07-03T10:59:00Z",
    }


def test_liquidation_of_a_short_bought_above_the_index():
    liquidated = fill(side="Bid", price="155", quantity="2", fee="0.5", system_order_type="LiquidatePositionOnAdl")

    found = d.detect_liquidations(ledger(fills=[liquidated]), context(SOL_PERP_150))

    # (150 - 155) * 2 * (-1) + 0.5
    assert owed(found) == {("liquidation", "fill:1:Bid", "USDC"): Decimal("10.500000")}


def test_a_liquidation_at_a_favourable_price_still_owes_its_fee():
    liquidated = fill(side="Ask", price="160", fee="3", system_order_type="LiquidatePositionOnBackstop")

    found = d.detect_liquidations(ledger(fills=[liquidated]), context(SOL_PERP_150))

    assert owed(found) == {("liquidation", "fill:1:Ask", "USDC"): Decimal("3.000000")}


def test_a_favourable_liquidation_without_fee_is_not_an_item():
    liquidated = fill(side="Ask", price="160", fee="0", system_order_type="LiquidatePositionOnBook")

    found = d.detect_liquidations(ledger(fills=[liquidated]), context(SOL_PERP_150))

    assert [x.amount for x in found] == [Decimal("0E-6")]
    assert owed(found) == {}


def test_a_fee_rebate_is_never_turned_into_a_debit():
    liquidated = fill(side="Ask", price="140", fee="-2", system_order_type="LiquidatePositionOnBook")

    found = d.detect_liquidations(ledger(fills=[liquidated]), context(SOL_PERP_150))

    assert owed(found) == {("liquidation", "fill:1:Ask", "USDC"): Decimal("10.000000")}


def test_a_liquidation_fee_in_another_asset_is_its_own_item():
    liquidated = fill(
        side="Ask", price="140", fee="0.05", fee_symbol="SOL", system_order_type="LiquidatePositionOnBook"
    )

    found = d.detect_liquidations(ledger(fills=[liquidated]), context(SOL_PERP_150))

    assert owed(found) == {
        ("liquidation", "fill:1:Ask", "USDC"): Decimal("10.000000"),
        ("liquidation", "fill:1:Ask", "SOL"): Decimal("0.050000000"),
    }


def test_a_liquidation_without_a_price_needs_review_as_one_item_in_the_quote_asset():
    liquidated = fill(
        price="140",
        fee="0.05",
        fee_symbol="SOL",
        timestamp=at("11:05", 0.001),
        system_order_type="LiquidatePositionOnBook",
    )

    found = d.detect_liquidations(ledger(fills=[liquidated]), context(SOL_PERP_150))

    assert [(x.asset, x.amount, x.review_reason) for x in found] == [
        ("USDC", None, "no price for SOL_USDC_PERP at 2025-07-03T11:05:00.001000Z")
    ]


def test_the_window_bounds_are_inclusive():
    prices = {"SOL_USDC_PERP": [(WINDOW_START - MS, "150"), (WINDOW_END, "150")]}
    fills = [
        fill(n, price="140", timestamp=t, system_order_type="LiquidatePositionOnBook")
        for n, t in enumerate([WINDOW_START - MS, WINDOW_START, WINDOW_END, WINDOW_END + MS], 1)
    ]

    found = d.detect_liquidations(ledger(fills=fills), context(prices))

    assert sorted(owed(found)) == [("liquidation", "fill:2:Ask", "USDC"), ("liquidation", "fill:3:Ask", "USDC")]


# --- bad fill ---


def test_a_fill_beyond_the_tolerance_owes_the_whole_deviation():
    sold_low = fill(1, side="Ask", price="149", quantity="2", fee="0.3")
    bought_high = fill(2, side="Bid", price="151", quantity="3")

    found = d.detect_bad_fills(ledger(fills=[sold_low, bought_high]), context(SOL_PERP_150))

    # deviation 1/150 = 0.67% > 0.5%: (150 - 149) * 2 and (150 - 151) * 3 * (-1); the fee is not added
    assert owed(found) == {
        ("bad_fill", "fill:1:Ask", "USDC"): Decimal("2.000000"),
        ("bad_fill", "fill:2:Bid", "USDC"): Decimal("3.000000"),
    }


def test_a_deviation_exactly_at_the_tolerance_is_normal_slippage():
    at_tolerance = fill(side="Ask", price="149.25", quantity="4")  # 0.75 / 150 = 0.005 exactly

    found = d.detect_bad_fills(ledger(fills=[at_tolerance]), context(SOL_PERP_150))

    assert owed(found) == {}
    assert found[0].inputs["deviation"] == "0.005"


def test_a_favourable_fill_owes_nothing():
    bought_low = fill(side="Bid", price="140")

    found = d.detect_bad_fills(ledger(fills=[bought_low]), context(SOL_PERP_150))

    assert owed(found) == {} and found[0].amount == 0


def test_an_own_fill_without_a_price_needs_review():
    unpriced = fill(side="Ask", price="149", timestamp=at("12:00"))

    found = d.detect_bad_fills(ledger(fills=[unpriced]), context(SOL_PERP_150))

    assert [(x.kind, x.asset, x.amount) for x in found] == [("bad_fill", "USDC", None)]
    assert found[0].review_reason == "no price for SOL_USDC_PERP at 2025-07-03T12:00:00Z"


def test_other_system_fills_are_neither_kind():
    converted = fill(side="Ask", price="1", system_order_type="CollateralConversion")

    ctx = context(SOL_PERP_150)

    assert d.detect_bad_fills(ledger(fills=[converted]), ctx) == []
    assert d.detect_liquidations(ledger(fills=[converted]), ctx) == []


def test_rounding_is_half_up_once_at_the_end():
    tiny = fill(side="Ask", price="149", quantity="0.0000025")  # owes 1 * 0.0000025 USDC

    found = d.detect_bad_fills(ledger(fills=[tiny]), context(SOL_PERP_150))

    assert owed(found) == {("bad_fill", "fill:1:Ask", "USDC"): Decimal("0.000003")}  # half-even would give 2


# --- wrong withdrawal ---


def test_a_failed_withdrawal_never_returned_owes_quantity_plus_fee():
    found = d.detect_wrong_withdrawals(ledger(withdrawals=[withdrawal(quantity="100", fee="1")]), context({}))

    assert owed(found) == {("wrong_withdrawal", "withdrawal:1", "USDC"): Decimal("101.000000")}


def test_which_withdrawals_qualify_by_status_and_time():
    earliest = WINDOW_START.replace(day=2)  # window_start - 24h
    withdrawals = [
        withdrawal(1, created_at=earliest),
        withdrawal(2, created_at=earliest - MS),
        withdrawal(3, created_at=TRADING_RESUMED - MS),
        withdrawal(4, created_at=TRADING_RESUMED),
        withdrawal(5, status="confirmed"),
        withdrawal(6, status="pending"),
        withdrawal(7, status="cancelled"),
        withdrawal(8, status="returned"),
    ]

    found = d.detect_wrong_withdrawals(ledger(withdrawals=withdrawals), context({}))

    assert sorted(x.reference for x in found) == ["withdrawal:1", "withdrawal:3", "withdrawal:7", "withdrawal:8"]


def test_a_linked_return_in_another_asset_is_valued_at_its_own_time():
    usdc_out = withdrawal(5521, quantity="104000", fee="1")
    sol_back = deposit(9, symbol="SOL", quantity="891", created_at=at("13:00"), withdrawal_id=5521)
    prices = {"SOL_USDC": [(at("12:59"), "116.5")]}

    found = d.detect_wrong_withdrawals(ledger(withdrawals=[usdc_out], deposits=[sol_back]), context(prices))

    # 104000 + 1 - 891 * 116.5 / 1 = 104001 - 103801.5
    assert owed(found) == {("wrong_withdrawal", "withdrawal:5521", "USDC"): Decimal("199.500000")}
    assert found[0].inputs["return_credits"][0]["value_of_deposit"]["price"] == "116.5"


def test_a_linked_return_counts_whenever_it_was_made():
    late = deposit(9, quantity="100", created_at=at("10:00", day=9), withdrawal_id=1)

    found = d.detect_wrong_withdrawals(ledger(withdrawals=[withdrawal(1)], deposits=[late]), context({}))

    assert owed(found) == {("wrong_withdrawal", "withdrawal:1", "USDC"): Decimal("1.000000")}


def test_pairing_prefers_a_return_in_the_withdrawals_asset_even_if_later():
    sol_first = deposit(1, symbol="SOL", quantity="0.5", created_at=at("12:00"))
    usdc_later = deposit(2, quantity="60", created_at=at("13:00"))

    found = d.detect_wrong_withdrawals(
        ledger(withdrawals=[withdrawal(1)], deposits=[sol_first, usdc_later]), context({})
    )

    assert owed(found) == {("wrong_withdrawal", "withdrawal:1", "USDC"): Decimal("41.000000")}


def test_pairing_falls_back_to_a_return_in_any_asset():
    sol_back = deposit(1, symbol="SOL", quantity="0.5", created_at=at("12:00"))
    prices = {"SOL_USDC": [(at("12:00"), "150")]}

    found = d.detect_wrong_withdrawals(ledger(withdrawals=[withdrawal(1)], deposits=[sol_back]), context(prices))

    assert owed(found) == {("wrong_withdrawal", "withdrawal:1", "USDC"): Decimal("26.000000")}  # 101 - 75


def test_two_failed_withdrawals_compete_for_returns_in_created_order():
    first = withdrawal(1, quantity="100", fee="1", created_at=at("08:00"))
    second = withdrawal(2, quantity="50", fee="1", created_at=at("09:00"))
    returns = [deposit(10, quantity="30", created_at=at("12:00")), deposit(11, quantity="20", created_at=at("13:00"))]

    found = d.detect_wrong_withdrawals(ledger(withdrawals=[second, first], deposits=returns), context({}))

    assert owed(found) == {
        ("wrong_withdrawal", "withdrawal:1", "USDC"): Decimal("71.000000"),
        ("wrong_withdrawal", "withdrawal:2", "USDC"): Decimal("31.000000"),
    }


def test_only_confirmed_internal_credits_between_the_withdrawal_and_window_end_can_be_paired():
    candidates = [
        deposit(1, quantity="1", created_at=at("08:59")),  # before the withdrawal
        deposit(2, quantity="2", created_at=WINDOW_END + MS),  # after window_end
        deposit(3, quantity="4", source="blockchain", created_at=at("12:00")),
        deposit(4, quantity="8", status="pending", created_at=at("12:00")),
        deposit(5, quantity="16", created_at=at("12:00"), withdrawal_id=999),  # linked elsewhere
        deposit(6, quantity="32", created_at=WINDOW_END),  # eligible: the bound is inclusive
    ]

    found = d.detect_wrong_withdrawals(ledger(withdrawals=[withdrawal(1)], deposits=candidates), context({}))

    assert owed(found) == {("wrong_withdrawal", "withdrawal:1", "USDC"): Decimal("69.000000")}  # 101 - 32


def test_a_return_worth_more_than_the_withdrawal_owes_nothing():
    found = d.detect_wrong_withdrawals(
        ledger(withdrawals=[withdrawal(1)], deposits=[deposit(1, quantity="500")]), context({})
    )

    assert owed(found) == {} and found[0].amount == 0


def test_a_return_without_a_price_needs_review_and_stays_taken():
    first = withdrawal(1, created_at=at("08:00"))
    second = withdrawal(2, created_at=at("09:00"))
    sol_back = deposit(1, symbol="SOL", quantity="0.5", created_at=at("12:00"))

    found = d.detect_wrong_withdrawals(ledger(withdrawals=[first, second], deposits=[sol_back]), context({}))

    assert [(x.reference, x.amount) for x in found] == [("withdrawal:1", None), ("withdrawal:2", Decimal("101.000000"))]
    assert found[0].review_reason == "no price for SOL_USDC at 2025-07-03T12:00:00Z"


# --- position error ---

BEFORE = at("09:59")
PERP_PRICES = {"SOL_USDC_PERP": [(at("12:09"), "150"), (at("13:00"), "155"), (EVALUATION_END, "140")]}


def test_a_long_flipped_to_a_short_owes_the_move_until_the_next_fill():
    snapshots = [position("10", BEFORE), position("-10", TRADING_RESUMED)]
    next_fill = fill(9, side="Bid", quantity="20", timestamp=at("13:00"))

    found, findings = d.detect_position_errors(
        ledger(position_snapshots=snapshots, fills=[next_fill]), context(PERP_PRICES)
    )

    # delta = -10 - 10 = -20; t1 = 13:00; -(-20) * (155 - 150)
    assert owed(found) == {("position_error", "position:SOL_USDC_PERP", "USDC"): Decimal("100.000000")}
    assert findings[0].description == "restore netQuantity of SOL_USDC_PERP from -10 to 10"
    assert found[0].corrective_action == findings[0].description


def test_a_position_error_the_market_moved_in_favour_of_owes_nothing_but_is_still_corrected():
    snapshots = [position("10", BEFORE), position("-10", TRADING_RESUMED)]

    found, findings = d.detect_position_errors(ledger(position_snapshots=snapshots), context(PERP_PRICES))

    # no later fill: t1 = evaluation_end, price 140 < 150: -(-20) * (140 - 150) < 0
    assert owed(found) == {} and found[0].amount == 0
    assert found[0].inputs["t1"] == "2025-07-04T12:00:00Z"
    assert findings[0].quantity == Decimal("-20")


def test_a_position_that_grew_short_is_owed_when_the_price_fell():
    snapshots = [position("-5", BEFORE), position("-1", TRADING_RESUMED)]

    found, _ = d.detect_position_errors(ledger(position_snapshots=snapshots), context(PERP_PRICES))

    # delta = -1 - (-5) = +4; -(4) * (140 - 150) = 40
    assert owed(found) == {("position_error", "position:SOL_USDC_PERP", "USDC"): Decimal("40.000000")}


def test_fills_between_the_snapshots_explain_a_position_change():
    snapshots = [position("10", BEFORE), position("4", TRADING_RESUMED)]
    fills = [
        fill(1, side="Ask", quantity="99", timestamp=BEFORE),  # at before: not counted
        fill(2, side="Ask", quantity="8", timestamp=at("11:00")),
        fill(3, side="Bid", quantity="2", timestamp=TRADING_RESUMED),
    ]  # at after: counted

    found, findings = d.detect_position_errors(ledger(position_snapshots=snapshots, fills=fills), context(PERP_PRICES))

    assert found == [] and findings == []


def test_without_a_before_snapshot_the_position_starts_at_zero():
    snapshots = [position("3", TRADING_RESUMED)]
    fills = [fill(1, side="Bid", quantity="5", timestamp=at("08:00", day=1))]

    found, _ = d.detect_position_errors(ledger(position_snapshots=snapshots, fills=fills), context(PERP_PRICES))

    # expected 5, delta -2, t1 = evaluation_end: 2 * (140 - 150) < 0
    assert found[0].inputs["expected"] == "5" and found[0].inputs["delta"] == "-2"


def test_without_an_after_snapshot_there_is_nothing_to_check():
    found, findings = d.detect_position_errors(
        ledger(position_snapshots=[position("10", BEFORE)]), context(PERP_PRICES)
    )

    assert found == [] and findings == []


def test_a_position_error_without_a_price_needs_review():
    snapshots = [position("10", BEFORE), position("-10", TRADING_RESUMED)]

    found, _ = d.detect_position_errors(ledger(position_snapshots=snapshots), context({}))

    assert (found[0].amount, found[0].review_reason) == (None, "no price for SOL_USDC_PERP at 2025-07-03T12:10:00Z")
    assert found[0].corrective_action == "restore netQuantity of SOL_USDC_PERP from -10 to 10"


# --- missing funds ---


def test_a_balance_lower_than_the_journal_explains_is_owed_back():
    snapshots = [balance("1000", BEFORE), balance("900", TRADING_RESUMED)]
    journal = [entry("-50", at("11:00"))]

    found, findings = d.detect_missing_funds(ledger(balance_snapshots=snapshots, journal=journal), context({}))

    # 900 - (1000 - 50) = -50
    assert owed(found) == {("missing_funds", "balance:USDT", "USDT"): Decimal("50.000000")}
    assert findings == []


def test_a_margin_debit_that_jumped_on_a_negative_balance_is_owed_back():
    snapshots = [balance("-31000", BEFORE), balance("-111000", TRADING_RESUMED)]

    found, _ = d.detect_missing_funds(ledger(balance_snapshots=snapshots), context({}))

    assert owed(found) == {("missing_funds", "balance:USDT", "USDT"): Decimal("80000.000000")}


def test_a_surplus_is_a_finding_never_an_item():
    snapshots = [balance("1000", BEFORE), balance("1100", TRADING_RESUMED)]

    found, findings = d.detect_missing_funds(ledger(balance_snapshots=snapshots), context({}))

    assert found == []
    assert [(f.kind, f.reference, f.quantity) for f in findings] == [
        ("balance_surplus", "balance:USDT", Decimal("100"))
    ]


def test_journal_entries_count_after_the_before_snapshot_up_to_the_after_snapshot():
    snapshots = [balance("100", BEFORE), balance("107", TRADING_RESUMED)]
    journal = [
        entry("1000", BEFORE, id=1),
        entry("3", at("11:00"), id=2),
        entry("4", TRADING_RESUMED, id=3),
        entry("2000", TRADING_RESUMED + MS, id=4),
        entry("9", at("11:00"), symbol="BTC", id=5),
    ]

    found, findings = d.detect_missing_funds(ledger(balance_snapshots=snapshots, journal=journal), context({}))

    assert found == [] and findings == []


def test_without_a_before_balance_every_earlier_entry_counts():
    snapshots = [balance("5", TRADING_RESUMED)]
    journal = [entry("7", at("08:00", day=1))]

    found, _ = d.detect_missing_funds(ledger(balance_snapshots=snapshots, journal=journal), context({}))

    assert owed(found) == {("missing_funds", "balance:USDT", "USDT"): Decimal("2.000000")}


def test_detect_all_runs_every_detector():
    rows = ledger(
        fills=[fill(1, price="140", system_order_type="LiquidatePositionOnBook"), fill(2, price="149")],
        withdrawals=[withdrawal(3)],
        balance_snapshots=[balance("10", BEFORE), balance("9", TRADING_RESUMED)],
        position_snapshots=[position("10", BEFORE), position("-10", TRADING_RESUMED)],
    )

    found, findings = d.detect_all(rows, context({**SOL_PERP_150, **PERP_PRICES}))

    assert {x.kind for x in found} == {"liquidation", "bad_fill", "wrong_withdrawal", "position_error", "missing_funds"}
    assert [f.kind for f in findings] == ["position_correction"]


def test_policy_window_is_inclusive():
    assert POLICY.in_window(WINDOW_START) and POLICY.in_window(WINDOW_END)
    assert not POLICY.in_window(WINDOW_END + MS)


def test_a_return_valued_at_a_price_of_zero_needs_review_instead_of_dividing_by_it():
    sol_out = withdrawal(5, symbol="SOL", quantity="10", fee="0")
    btc_back = deposit(9, symbol="BTC", quantity="0.01", created_at=at("13:00"))
    prices = {"SOL_USDC": [(at("12:59"), "0")], "BTC_USDC": [(at("12:59"), "100000")]}

    found = d.detect_wrong_withdrawals(ledger(withdrawals=[sol_out], deposits=[btc_back]), context(prices))

    assert [(x.amount, x.review_reason) for x in found] == [
        (None, "price for SOL_USDC at 2025-07-03T13:00:00Z is not positive")
    ]
