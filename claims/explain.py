"""Each item's amount in plain words, from the inputs stored with it, in the claimant's language."""

from decimal import Decimal

from django.utils.translation import gettext as _

from .money import amount_text


def number_text(value) -> str:
    """A decimal as people write it: every digit it has, no exponent, at least the cents."""
    number = Decimal(str(value))
    text = f"{number.normalize():f}"
    if "." in text and len(text.split(".")[1]) < 2:
        text = f"{number:.2f}"
    return text


_n = number_text


def _market(symbol: str) -> str:
    return symbol.replace("_USDC_PERP", "-PERP").replace("_", "/")


def explain(
    *, kind: str, inputs: dict, amount, asset: str, review_reason: str = "", decimals: dict[str, int] | None = None
) -> str:
    """`decimals` (the assets'): amounts in the item's asset are written with exactly its decimals."""
    if amount is None:
        return _("We could not compute this automatically (%(reason)s); our staff will review it.") % {
            "reason": review_reason
        }
    explainer = EXPLAINERS.get(kind)
    places = (decimals or {}).get(asset)
    in_asset = (lambda value: amount_text(value, places, grouped=False)) if places is not None else _n
    return explainer(inputs, in_asset(amount), asset, in_asset) if explainer else ""


def _liquidation(inputs: dict, amount: str, asset: str, in_asset=_n) -> str:
    if "reference_price" not in inputs:  # the fee item of a fee paid in another asset
        return _("the liquidation fee you paid: %(amount)s %(asset)s") % {"amount": amount, "asset": asset}
    values = {
        "market": _market(inputs["symbol"]),
        "quantity": _n(inputs["quantity"]),
        "price": _n(inputs["price"]),
        "pf": _n(inputs["reference_price"]["price"]),
        "fee": in_asset(inputs["fee_added"]),
        "amount": amount,
        "asset": asset,
    }
    if inputs["side"] == "Ask":  # the exchange sold: the position was long
        return (
            _(
                "your %(market)s long of %(quantity)s was liquidated at %(price)s while the reference price was "
                "%(pf)s: (%(pf)s − %(price)s) × %(quantity)s + fee %(fee)s = %(amount)s %(asset)s"
            )
            % values
        )
    return (
        _(
            "your %(market)s short of %(quantity)s was liquidated at %(price)s while the reference price was "
            "%(pf)s: (%(price)s − %(pf)s) × %(quantity)s + fee %(fee)s = %(amount)s %(asset)s"
        )
        % values
    )


def _bad_fill(inputs: dict, amount: str, asset: str, in_asset=_n) -> str:
    values = {
        "market": _market(inputs["symbol"]),
        "quantity": _n(inputs["quantity"]),
        "price": _n(inputs["price"]),
        "pf": _n(inputs["reference_price"]["price"]),
        "deviation": _n((Decimal(inputs["deviation"]) * 100).quantize(Decimal("0.01"))),
        "tolerance": _n(Decimal(inputs["tolerance"]) * 100),
        "amount": amount,
        "asset": asset,
    }
    if inputs["side"] == "Ask":
        return (
            _(
                "you sold %(quantity)s %(market)s at %(price)s while the reference price was %(pf)s, "
                "%(deviation)s%% worse, beyond the %(tolerance)s%% tolerance: "
                "(%(pf)s − %(price)s) × %(quantity)s = %(amount)s %(asset)s"
            )
            % values
        )
    return (
        _(
            "you bought %(quantity)s %(market)s at %(price)s while the reference price was %(pf)s, "
            "%(deviation)s%% worse, beyond the %(tolerance)s%% tolerance: "
            "(%(price)s − %(pf)s) × %(quantity)s = %(amount)s %(asset)s"
        )
        % values
    )


def _wrong_withdrawal(inputs: dict, amount: str, asset: str, in_asset=_n) -> str:
    values = {
        "quantity": in_asset(inputs["quantity"]),
        "fee": in_asset(inputs["fee"]),
        "symbol": inputs["symbol"],
        "returned": in_asset(inputs.get("returned", "0")),
        "amount": amount,
        "asset": asset,
    }
    if not inputs["return_credits"]:
        return (
            _(
                "your withdrawal of %(quantity)s %(symbol)s (fee %(fee)s) did not arrive and nothing came back: "
                "%(quantity)s + %(fee)s = %(amount)s %(asset)s"
            )
            % values
        )
    came_back = ", ".join(f"{_n(c['quantity'])} {c['symbol']}" for c in inputs["return_credits"])
    values["came_back"] = came_back
    return (
        _(
            "your withdrawal of %(quantity)s %(symbol)s (fee %(fee)s) did not arrive; %(came_back)s came back, "
            "worth %(returned)s %(symbol)s: %(quantity)s + %(fee)s − %(returned)s = %(amount)s %(asset)s"
        )
        % values
    )


def _position_error(inputs: dict, amount: str, asset: str, in_asset=_n) -> str:
    delta = Decimal(inputs["delta"])
    values = {
        "market": _market(inputs["symbol"]),
        "expected": _n(inputs["expected"]),
        "after": _n(inputs["after"]["net_quantity"]),
        "p0": _n(inputs["P0"]["price"]),
        "p1": _n(inputs["P1"]["price"]),
        "t0": inputs["t0"],
        "t1": inputs["t1"],
        "size": _n(-delta),
        "amount": amount,
        "asset": asset,
    }
    return (
        _(
            "your %(market)s position should have been %(expected)s when trading resumed but was %(after)s; "
            "from %(t0)s to %(t1)s the price moved from %(p0)s to %(p1)s: %(size)s × (%(p1)s − %(p0)s) = "
            "%(amount)s %(asset)s"
        )
        % values
    )


def _missing_funds(inputs: dict, amount: str, asset: str, in_asset=_n) -> str:
    before = Decimal(inputs["before"]["total"]) if inputs["before"] else Decimal(0)
    journal = Decimal(inputs["journal"])
    values = {
        "asset": asset,
        "before": in_asset(before),
        "journal": in_asset(journal),
        "expected": in_asset(before + journal),
        "after": in_asset(inputs["after"]["total"]),
        "amount": amount,
    }
    return (
        _(
            "your %(asset)s balance should have been %(before)s + %(journal)s = %(expected)s after the incident, "
            "but it was %(after)s: %(amount)s %(asset)s is missing"
        )
        % values
    )


EXPLAINERS = {
    "liquidation": _liquidation,
    "bad_fill": _bad_fill,
    "wrong_withdrawal": _wrong_withdrawal,
    "position_error": _position_error,
    "missing_funds": _missing_funds,
}
