"""The kind of a claim, from the writer's wording, as compensation-policy.md defines the kinds:
a balance or a debt that changed with no trade or transfer behind it is `missing_funds`; a
position that changed side or size by itself is `position_error`.

A kind is given only when the wording names exactly one. Two rules settle the overlaps the
policy itself settles: a liquidation at a bad price is a liquidation (system fills are never
bad fills), and "my funds are gone" beside a named event describes that event's loss. Being
unable to log in, trade or close (a loss outside the five kinds) is `other`. Anything else,
including two different kinds in one message, is None: left for staff.
"""

import re

STOP = r"(?:[^.!?;。！？；\n]|\.(?=[0-9]))"  # within one sentence (a decimal point ends none)

WORDING = {
    "liquidation": (
        r"(?<![a-z])(?:liquidat(?:ed|ion|ions|ing|e)|forced?[- ]clos(?:ed|e|ure)|forcibly closed|"
        r"auto[- ]?deleverag\w*|adl(?:'?ed)?(?![a-z]))"
        r"|强平|强制平仓|爆仓|被平仓|清算|自动减仓"
        r"|(?<![a-z])(?:liquida(?:d[oa]s?|[çc][ãa]o|[çc][õo]es|ram|ou)(?![a-z])|fechamento for[çc]ado|"
        r"fechad[oa]s? [àa] for[çc]a)"
    ),
    "bad_fill": (
        rf"bad fills?|slippage|(?:filled|executed|fill|execution)\b{STOP}{{0,40}}?\b(?:bad|wrong|terrible|awful|"
        r"crazy|absurd|abnormal|strange|unfair|off[- ]market|far (?:away )?from)\b"
        r"|(?:bad|wrong|terrible|awful|crazy|absurd|abnormal|unfair|off[- ]market)\s+(?:fill|execution)s?\b"
        r"|滑点|成交价格?(?:严重)?(?:异常|不对|错误|离谱|偏离|不合理)|以(?:异常|错误|离谱|不合理)的?价格成交"
        r"|(?:异常|错误|离谱)的?成交价"
        rf"|derrapagem|(?:executad[ao]s?|preenchid[ao]s?|execu[çc][ãa]o)\b{STOP}{{0,40}}?pre[çc]o\s+"
        r"(?:errado|ruim|absurdo|estranho|anormal|injusto|p[ée]ssimo)"
        r"|pre[çc]o\s+(?:errado|ruim|absurdo|anormal|injusto|p[ée]ssimo)\s+(?:de\s+)?execu[çc][ãa]o"
    ),
    "wrong_withdrawal": (
        rf"withdraw(?:al|als|n|ing)?\b{STOP}{{0,80}}?\b(?:fail\w*|stuck|missing|never (?:arrived|came|reached)|"
        r"not (?:arrived|received|credited|returned)|(?:didn't|did not|hasn't|has not|haven't|have not) "
        r"(?:arrive|arrived|come|reach|reached|return|returned|been (?:credited|returned|received))|wrong|"
        r"cancell?ed|returned|reversed|lost|bounced|disappeared|rejected)"
        r"|\b(?:failed|missing|cancell?ed|returned|reversed|lost|stuck|wrong)\s+withdrawals?\b"
        rf"|(?:提现|提币|提款){STOP}{{0,30}}?(?:失败|没到账|未到账|没有到账|不到账|丢失|错误|被取消|取消|退回|卡住|"
        r"消失|没收到|未收到|少了|不见)|(?:失败|错误)的(?:提现|提币|提款)"
        rf"|(?<![a-z])(?:saques?|retiradas?|levantamentos?)\b{STOP}{{0,80}}?(?:falh\w*|n[ãa]o (?:chegou|caiu|"
        r"foi creditad[oa]|voltou|foi devolvid[oa])|cancelad[oa]|devolvid[oa]|sumiu|perdid[oa]|errad[oa]|"
        r"travad[oa]|estornad[oa]|rejeitad[oa])"
    ),
    "position_error": (
        rf"position{STOP}{{0,60}}?\b(?:by itself|on its own|without (?:me|my|any)|flipped|reversed|doubled|"
        r"changed sides?|switched sides?)\b"
        r"|\b(?:long|short)\s+(?:position\s+)?(?:became|turned into|flipped to|changed to|switched to|is now)\s+"
        r"(?:an?\s+)?(?:short|long)\b|\bflipped (?:from\s+)?(?:long|short)\b"
        rf"|(?:仓位|持仓|头寸){STOP}{{0,30}}?(?:自己|自动|莫名其妙|无故|凭空|突然){STOP}{{0,10}}?(?:变|翻|反|多了|少了|"
        r"消失|被平|改变|增加|减少)|(?:多单|多仓|多头)(?:变成?|成了)(?:空单|空仓|空头)"
        r"|(?:空单|空仓|空头)(?:变成?|成了)(?:多单|多仓|多头)|(?:仓位|持仓)(?:方向)?(?:反了|翻转|反向|相反)"
        rf"|posi[çc][ãa]o{STOP}{{0,60}}?(?:sozinha|por conta pr[óo]pria|sem (?:eu|minha|nenhuma|qualquer)|"
        r"invertid[ao]|inverteu|mudou de lado|virou|dobrou)"
        r"|\b(?:long|comprad[ao])\s+(?:virou|passou a ser|se tornou|mudou para)\s+(?:um\s+|uma\s+)?(?:short|vendid[ao])"
        r"|\b(?:short|vendid[ao])\s+(?:virou|passou a ser|se tornou|mudou para)\s+(?:um\s+|uma\s+)?(?:long|comprad[ao])"
    ),
    "missing_funds": (
        rf"\b(?:funds|balance|money|coins|tokens|assets|holdings|collateral|margin|debt|borrow(?:ed|ing)?|loan)\b"
        rf"{STOP}{{0,40}}?\b(?:missing|gone|disappeared|vanished|dropped|decreased|shrank|debited|deducted|jumped|"
        r"increased|went up|reduced|lower|wrong)\b"
        r"|\b(?:missing|disappeared|vanished)\s+(?:\w+\s+)?(?:funds|balance|money|coins|holdings)\b"
        r"|\b(?:no|without any|without a|without)\s+(?:trade|transfer|transaction)s?\b"
        rf"|(?:余额|资金|资产|币|钱|保证金|负债|借款|欠款){STOP}{{0,20}}?(?:不见|丢失|消失|少了|减少|没了|凭空|被扣|"
        r"扣除|变少|增加|多了|变成负)|(?:凭空|莫名其妙|无故)(?:少了|消失|多了|扣)"
        rf"|(?:saldo|fundos|dinheiro|moedas|ativos|margem|d[íi]vida|empr[ée]stimo){STOP}{{0,40}}?(?:sumiu|sumiram|"
        r"desapareceu|desapareceram|diminuiu|caiu|sumid[oa]s?|faltando|debitad[oa]s?|aumentou|zerou|errad[oa])"
        r"|sem (?:nenhuma|qualquer) (?:negocia[çc][ãa]o|opera[çc][ãa]o|transfer[êe]ncia)"
    ),
    "other": (
        r"\b(?:couldn't|could not|can't|cannot|unable to|wasn't able to|was not able to|not able to)\s+"
        r"(?:\w+\s+){0,2}?(?:log ?in|login|sign in|access|place|cancel|close|open|trade|withdraw|deposit)\b"
        r"|(?:无法|不能|没法|没办法)(?:正常)?(?:登录|登陆|下单|撤单|平仓|开仓|交易|操作|提现|充值)|登(?:录|陆)不(?:上|了)"
        r"|n[ãa]o (?:consegui|conseguia|conseguimos|pude|podia|dava para|deu para)\s+(?:\w+\s+)?(?:entrar|logar|"
        r"acessar|operar|fechar|abrir|cancelar|negociar|sacar|depositar)"
    ),
}
PATTERNS = {kind: re.compile(wording, re.I) for kind, wording in WORDING.items()}
# Kinds whose wording a negation before it takes back ("I was not liquidated"); the others
# carry their own negation ("withdrawal never arrived", "couldn't log in").
NEGATABLE = {"liquidation", "bad_fill", "position_error"}
NEGATION = re.compile(
    r"(?:\b(?:not|never|no|wasn't|weren't|isn't|didn't|hasn't|haven't|n[ãa]o|nunca|nem)\b(?:\s+\w+){0,2}\s*"
    r"|(?:没有|没|未|并未|不是|并非)\s*(?:被)?\s*)$",
    re.I,
)


def claim_kind(text: str) -> str | None:
    """The one kind the text states, or None when it states none or several."""
    found = {kind for kind, pattern in PATTERNS.items() if _stated(kind, pattern, text)}
    if {"liquidation", "bad_fill"} <= found:
        found.discard("bad_fill")
    for weaker in ("other", "missing_funds"):
        if len(found) > 1:
            found.discard(weaker)
    return found.pop() if len(found) == 1 else None


def _stated(kind: str, pattern: re.Pattern, text: str) -> bool:
    return any(kind not in NEGATABLE or not _negated(text, match.start()) for match in pattern.finditer(text))


def _negated(text: str, start: int) -> bool:
    """A negation earlier in the same clause, a few words before."""
    clause_start = max(max(text.rfind(mark, 0, start) for mark in ".,;!?。，；！？\n") + 1, start - 40)
    return bool(NEGATION.search(text, clause_start, start))
