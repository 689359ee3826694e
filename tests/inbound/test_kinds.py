import pytest

from claims.inbound import claim_kind

STATED = [
    ("I was liquidated on SOL-PERP", "liquidation"),
    ("My position got auto-deleveraged", "liquidation"),
    ("我的仓位被强平了", "liquidation"),
    ("7月3日爆仓了", "liquidation"),
    ("Fui liquidado durante a manutenção", "liquidation"),
    ("A liquidação da minha posição foi injusta", "liquidation"),
    ("My order was filled at a terrible price", "bad_fill"),
    ("Huge slippage on my market order", "bad_fill"),
    ("成交价格异常，比指数低很多", "bad_fill"),
    ("A ordem foi executada a um preço absurdo", "bad_fill"),
    ("My withdrawal 5104 failed and the USDC never came back", "wrong_withdrawal"),
    ("The withdrawal of 2,500.50 USDC was returned only in part", "wrong_withdrawal"),
    ("提现失败，钱没有退回", "wrong_withdrawal"),
    ("Meu saque não chegou", "wrong_withdrawal"),
    ("My long position flipped to short by itself", "position_error"),
    ("my long became a short", "position_error"),
    ("仓位自己变成了空单", "position_error"),
    ("多单变成空单了", "position_error"),
    ("Minha posição virou short sozinha", "position_error"),
    ("My SOL balance disappeared", "missing_funds"),
    ("The margin debt jumped with no trade", "missing_funds"),
    ("余额凭空少了2000 USDC", "missing_funds"),
    ("Meu saldo sumiu", "missing_funds"),
    ("I could not log in during the maintenance", "other"),
    ("维护期间无法登录", "other"),
    ("Não consegui fechar minha posição", "other"),
]


@pytest.mark.parametrize(("text", "kind"), STATED)
def test_kind_from_wording(text, kind):
    assert claim_kind(text) == kind


def test_no_wording_no_kind():
    assert claim_kind("Hello, please call me back. Trade 982069.") is None
    assert claim_kind("") is None


def test_two_kinds_in_one_message_are_left_for_staff():
    assert claim_kind("I was liquidated on SOL-PERP and separately my withdrawal 5109 failed.") is None


def test_a_liquidation_at_a_bad_price_is_a_liquidation():
    assert claim_kind("I was liquidated and the fill was at a terrible price") == "liquidation"


def test_funds_gone_beside_a_named_event_is_that_event():
    assert claim_kind("My withdrawal failed and the money is gone from my balance") == "wrong_withdrawal"
    assert claim_kind("Fui liquidado e meu saldo sumiu") == "liquidation"


def test_being_unable_to_act_yields_to_a_named_event():
    assert claim_kind("I couldn't close my position and got liquidated") == "liquidation"


def test_a_negated_event_is_not_stated():
    assert claim_kind("I was not liquidated, but my position flipped to short by itself") == "position_error"
    assert claim_kind("我没有被强平，但是提现失败了") == "wrong_withdrawal"
    assert claim_kind("Não fui liquidado. Meu saque falhou.") == "wrong_withdrawal"


def test_liquidity_is_not_liquidation():
    assert claim_kind("There was no liquidity on the book") is None
    assert claim_kind("Havia pouca liquidez") is None
