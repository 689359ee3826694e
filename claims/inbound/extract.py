"""What a claimant states in their own words, in English, 简体中文 and Português: the kind of
claim, markets, trade / order / withdrawal ids, transaction hashes, amounts, and the userId
they name as theirs. What cannot be told is left empty for staff, never guessed.

Identifiers count only where the writer introduces them ("trade 982069", "成交编号", "saque
#5104"): a bare number could be anything. Only ASCII digits are digits; full-width forms
typed by a Chinese input method (`１０万ＵＳＤＴ`, `：`) are read as the ASCII they stand
for, the one normalisation made, and the full-width comma stays punctuation.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from .kinds import claim_kind

# Full-width ASCII (U+FF01..U+FF5E) and the ideographic space, except "，", a clause comma.
FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F) if code != 0xFF0C} | {0x3000: 0x20}
SENTENCE_END = ".!?。！？\n"


@dataclass(frozen=True)
class Extracted:
    kind: str | None
    symbols: tuple[str, ...] = ()
    trade_ids: tuple[int, ...] = ()
    order_ids: tuple[str, ...] = ()
    withdrawal_ids: tuple[int, ...] = ()
    tx_hashes: tuple[str, ...] = ()
    amounts: tuple[tuple[str, str], ...] = ()  # (decimal as written, asset), e.g. ("104000.00", "USDC")
    user_ids: tuple[int, ...] = ()  # every userId the writer names as their account

    @property
    def named_user_id(self) -> int | None:
        """The userId the writer names, when they name exactly one."""
        return self.user_ids[0] if len(self.user_ids) == 1 else None

    def export(self) -> dict:
        return {
            "kind": self.kind,
            "symbols": list(self.symbols),
            "tradeIds": list(self.trade_ids),
            "orderIds": list(self.order_ids),
            "withdrawalIds": list(self.withdrawal_ids),
            "txHashes": list(self.tx_hashes),
            "amounts": [list(a) for a in self.amounts],
        }


def extract(text: str, markets: Iterable[str], assets: Iterable[str] | None = None) -> Extracted:
    """Read `text` (plain, visible) against the known market symbols (`SOL_USDC_PERP`) and
    assets (by default every base and quote of those markets)."""
    text = text.translate(FULL_WIDTH)
    markets = frozenset(markets)
    assets = frozenset(a.upper() for a in assets) if assets is not None else _market_assets(markets)
    units = _units(assets)
    return Extracted(
        kind=claim_kind(text),
        symbols=tuple(sorted(_symbols(text, markets))),
        trade_ids=tuple(sorted({int(i) for i in _introduced(text, TRADE, NUMERIC_ID, units)})),
        order_ids=tuple(sorted(set(_introduced(text, ORDER, ORDER_ID, units)))),
        withdrawal_ids=tuple(sorted({int(i) for i in _introduced(text, WITHDRAWAL, NUMERIC_ID, units)})),
        tx_hashes=tuple(sorted(set(_tx_hashes(text)))),
        amounts=_sorted_amounts(_amounts(text, assets)),
        user_ids=tuple(sorted({int(i) for i in _introduced(text, ACCOUNT, NUMERIC_ID, units)})),
    )


# Markets ------------------------------------------------------------------------------------

PERP_WORD = r"perp(?:etual)?s?|perp[ée]tuos?|永续(?:合约)?"
SYMBOL = re.compile(
    rf"(?<![A-Za-z0-9])([A-Za-z][A-Za-z0-9]{{1,9}})(?:\s?[-_/]\s?([A-Za-z][A-Za-z0-9]{{1,9}}))?"
    rf"(?:[-_ ]?({PERP_WORD}))?(?![A-Za-z0-9])",
    re.I,
)
IS_PERP_WORD = re.compile(PERP_WORD, re.I)


def _market_assets(markets: frozenset[str]) -> frozenset[str]:
    return frozenset(part for market in markets for part in market.split("_")[:2])


def _symbols(text: str, markets: frozenset[str]) -> set[str]:
    """Markets named in any usual spelling: `SOL_USDC_PERP`, `SOL-PERP`, `SOL/USDC`, `BTCUSDC`,
    `SOL永续`. A bare asset names no market; `SOL-PERP` names one only if SOL has one perp."""
    found = set()
    for base, quote, perp in SYMBOL.findall(text):
        if quote and IS_PERP_WORD.fullmatch(quote):
            quote, perp = "", quote
        suffix = "_PERP" if perp else ""
        if quote:
            candidates = {f"{base}_{quote}{suffix}".upper()}
        elif perp:
            candidates = {m for m in markets if m.endswith("_PERP") and m.split("_")[0] == base.upper()}
        else:
            candidates = {m for m in markets if m.count("_") == 1 and m.replace("_", "") == base.upper()}
        candidates &= markets
        if len(candidates) == 1:
            found |= candidates
    return found


# Identifiers --------------------------------------------------------------------------------

BEFORE_ID = r"(?:(?:id|n[úu]mero|numero|n[º°o]\.?)\s+d[aoe]\s+)?"
ID_SUFFIX = r"(?:\s*(?:ids?|no\.|n[º°o]\.?|numbers?|n[úu]mero|#|编号|单号|号|记录))?"
TRADE = (
    rf"(?<![A-Za-z])(?:{BEFORE_ID}(?:trades?|fills?|negocia[çc](?:[ãa]o|[õo]es)|execu[çc][ãa]o){ID_SUFFIX}"
    r"|成交(?:编号|单号|号|ID|记录)?|交易(?:编号|单号|号|ID))"
)
ORDER = (
    rf"(?<![A-Za-z])(?:{BEFORE_ID}(?:orders?|ordem|ordens|pedido)(?:\s+de\s+(?:compra|venda))?{ID_SUFFIX}"
    r"|(?:订单|委托单?)(?:编号|单号|号|ID)?)"
)
WITHDRAWAL = (
    rf"(?<![A-Za-z])(?:{BEFORE_ID}(?:withdrawals?|saques?|retiradas?|levantamentos?)"
    rf"(?:\s+request)?{ID_SUFFIX}|(?:提现|提币|提款)(?:编号|单号|订单号|记录|ID|号)?)"
)
ACCOUNT = (
    rf"(?<![A-Za-z])(?:{BEFORE_ID}(?:(?:my|minha)\s+)?(?:account|acct|user|customer|client|conta|"
    rf"usu[áa]rio)(?:\s+(?:de\s+)?usu[áa]rio)?{ID_SUFFIX}|uid|my\s+id|meu\s+id)|(?:账户|帐户|账号|帐号|用户)(?:ID|编号|号)?"
)
# What may stand between an introducer and the id: "trade id is: #982069", "账号是100056".
# (Each run of blanks has one way to match: "\s*#?\s*" would try every split of a long run.)
LINK = r"(?:\s*(?:[:=#]|is|was|é|e|是|为|為)(?![A-Za-z]))*\s*"
NUMERIC_ID = r"[0-9]{3,20}"
ORDER_ID = r"(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9][A-Za-z0-9_-]{2,63}"
LIST_JOIN = r"\s*(?:,|，|、|;|&|\band\b|\be\b|\bor\b|\bou\b|和|及|与|或)\s*(?:#\s*)?"
DATE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{1,2}-[0-9]{1,2}-[0-9]{4}")


@lru_cache(maxsize=64)
def _id_pattern(introducer: str, value: str) -> re.Pattern:
    return re.compile(rf"(?:{introducer}){LINK}({value}(?:{LIST_JOIN}{value})*)", re.I)


def _introduced(text: str, introducer: str, value: str, units: re.Pattern) -> list[str]:
    """The ids written right after an introducer, a list of them included ("trades 1, 2 and 3"),
    each kept only if no unit follows it (`order 500 SOL` is a quantity, not an id)."""
    found = []
    for match in _id_pattern(introducer, value).finditer(text):
        for item in re.finditer(value, match.group(1)):
            end = match.start(1) + item.end()
            if _continues(text, end) or units.match(text, end) or DATE.fullmatch(item.group()):
                break
            found.append(item.group())
    return found


def _continues(text: str, end: int) -> bool:
    """The id runs on into a decimal, a date, a word or an address (`user100056@example.com`)."""
    return bool(re.match(r"[A-Za-z0-9_@]|[-/.:,][0-9]|\.[A-Za-z]", text[end : end + 2]))


EVM_HASH = re.compile(r"(?<![0-9A-Za-z])0x([0-9a-fA-F]{64})(?![0-9A-Za-z])")
HEX_HASH = re.compile(r"(?<![0-9A-Za-z])([0-9a-fA-F]{64})(?![0-9A-Za-z])")
BASE58_RUN = re.compile(r"(?<![0-9A-Za-z])([1-9A-HJ-NP-Za-km-z]{80,90})(?![0-9A-Za-z])")
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ADDRESS_BEFORE = re.compile(r"(?:address|addr|wallet|endere[çc]o|carteira|地址|钱包)\W{0,3}$", re.I)


def _tx_hashes(text: str) -> list[str]:
    """0x + 64 hex (EVM), 64 hex (Bitcoin, Tron) and base58 of 64 bytes (a Solana signature).
    Wallet addresses are shorter (0x + 40 hex; base58 of 32 bytes), except where a 0x + 64
    hex value is introduced as an address (as Sui and Aptos write theirs)."""
    found = [
        f"0x{m.group(1).lower()}"
        for m in EVM_HASH.finditer(text)
        if not ADDRESS_BEFORE.search(text, max(0, m.start() - 12), m.start())
    ]
    found += [
        m.group(1).lower()
        for m in HEX_HASH.finditer(text)
        if not ADDRESS_BEFORE.search(text, max(0, m.start() - 12), m.start())
    ]
    found += [m.group(1) for m in BASE58_RUN.finditer(text) if _base58_length(m.group(1)) == 64]
    return found


def _base58_length(value: str) -> int:
    number = 0
    for char in value:
        number = number * 58 + BASE58.index(char)
    leading_zeros = len(value) - len(value.lstrip("1"))
    return leading_zeros + (number.bit_length() + 7) // 8


# Amounts ------------------------------------------------------------------------------------

GROUPED_COMMA = r"[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]+)?"  # 104,000.00
GROUPED_DOT = r"[1-9][0-9]{0,2}(?:\.[0-9]{3})+(?:,[0-9]+)?"  # 104.000,00
GROUPED_SPACE = r"[1-9][0-9]{0,2}(?:[\u00a0\u202f\u2009][0-9]{3})+(?:,[0-9]+)?"  # 104 000,00 (typographic spaces)
NUMBER = rf"{GROUPED_COMMA}|{GROUPED_DOT}|{GROUPED_SPACE}|[0-9]+(?:[.,][0-9]+)?"
MULTIPLIERS = {
    "万": 4,
    "萬": 4,
    "亿": 8,
    "億": 8,
    "千": 3,
    "k": 3,
    "thousand": 3,
    "mil": 3,
    "m": 6,
    "million": 6,
    "millions": 6,
    "milhão": 6,
    "milhões": 6,
    "milhao": 6,
    "milhoes": 6,
}
MULTIPLIER = r"\s?(?:[万萬亿億千]|[kKmM](?![A-Za-z])|\s(?:thousand|millions?|mil|milh[ãa]o|milh[õo]es)(?![A-Za-z]))"
CURRENCY_WORDS = {
    "USD": r"usd|dollars?|d[óo]lar(?:es)?|美元|美金",
    "EUR": r"eur|euros?|€|欧元",
    "BRL": r"brl|reais|real",
    "CNY": r"cny|rmb|人民币|元",
}
CURRENCY_SIGNS = {"US$": "USD", "U$": "USD", "R$": "BRL", "$": "USD", "€": "EUR", "¥": "CNY", "￥": "CNY"}
PRICE_BEFORE = re.compile(
    r"(?:\bat|@|\bprice[sd]?(?:\s+(?:of|was|is|at))?|pre[çc]o(?:\s+(?:de|era|foi))?|cota[çc][ãa]o(?:\s+de)?|"
    r"价格?(?:是|为|在)?|成交价|均价|强平价|开仓价|平仓价|价位|\bmark|\bindex|\bentry)\s*[:：]?\s*$",
    re.I,
)
LEFT_EDGE = r"(?<![0-9A-Za-z_.,])"


@lru_cache(maxsize=16)
def _units(assets: frozenset[str]) -> re.Pattern:
    """What makes a number a quantity: an asset or currency right after it, or %."""
    words = sorted([re.escape(a) for a in assets] + list(CURRENCY_WORDS.values()), key=len, reverse=True)
    return re.compile(rf"\s*(?:%|x(?![A-Za-z])|倍|(?:{'|'.join(words)})(?![A-Za-z]))", re.I)


@lru_cache(maxsize=16)
def _amount_patterns(assets: frozenset[str]) -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    names = sorted((re.escape(a) for a in assets), key=len, reverse=True)
    currencies = "|".join(f"(?P<{code}>{words})" for code, words in CURRENCY_WORDS.items())
    after = re.compile(
        rf"{LEFT_EDGE}(?P<number>{NUMBER})(?P<multiplier>{MULTIPLIER})?\s*"
        rf"(?:(?P<asset>{'|'.join(names) or '(?!)'})|{currencies})(?![A-Za-z0-9_]|[-/][A-Za-z])",
        re.I,
    )
    signs = "|".join(re.escape(s) for s in sorted(CURRENCY_SIGNS, key=len, reverse=True))
    before = re.compile(
        rf"(?<![A-Za-z])(?P<sign>{signs})\s?(?P<number>{NUMBER})(?P<multiplier>{MULTIPLIER})?"
        r"(?![0-9])",
        re.I,
    )
    price_after = re.compile(
        rf"\s*(?:/\s*(?:{'|'.join(names) or '(?!)'})|per\s|por\s+(?:{'|'.join(names) or '(?!)'}|unidade|cada)"
        r"|each\b|cada\b|每|的?价格|的?价位)",
        re.I,
    )
    return after, before, price_after


def _amounts(text: str, assets: frozenset[str]) -> set[tuple[str, str]]:
    after, before, price_after = _amount_patterns(assets)
    found = set()
    for match in after.finditer(text):
        asset = (match.group("asset") or "").upper() or next(c for c in CURRENCY_WORDS if match.group(c))
        if not _is_price(text, match, price_after):
            found.add((_decimal(match.group("number"), match.group("multiplier")), asset))
    for match in before.finditer(text):
        if not _is_price(text, match, price_after):
            sign = match.group("sign").upper()
            found.add((_decimal(match.group("number"), match.group("multiplier")), CURRENCY_SIGNS[sign]))
    return found


def _is_price(text: str, match: re.Match, price_after: re.Pattern) -> bool:
    """A price, not an amount: "at 150 USDC", "价格 150", "150 USDC/SOL", "150 USDC per SOL"."""
    line_start = max(text.rfind("\n", 0, match.start()) + 1, match.start() - 30)
    return bool(PRICE_BEFORE.search(text, line_start, match.start()) or price_after.match(text, match.end()))


def _decimal(number: str, multiplier: str | None) -> str:
    """The writer's number as a plain decimal string with their precision: "104.000,00" →
    "104000.00", "3.1" with 万 → "31000"."""
    if re.fullmatch(GROUPED_COMMA, number):
        number = number.replace(",", "")
    elif re.fullmatch(f"{GROUPED_DOT}|{GROUPED_SPACE}", number):
        number = re.sub(r"[.\u00a0\u202f\u2009]", "", number).replace(",", ".")
    else:
        number = number.replace(",", ".")
    value = Decimal(number)
    if multiplier:
        value = value.scaleb(MULTIPLIERS[multiplier.strip().lower()])
    return format(value, "f")


def _sorted_amounts(amounts: set[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(amounts, key=lambda a: (Decimal(a[0]), a[1], a[0])))
