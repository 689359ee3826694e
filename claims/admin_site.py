"""The staff site: the stock admin, whose front page is the dashboard of an incident. (Outside
claims/admin/, which registers the models on this site: the site is made before they are.)"""

from django.contrib import admin
from django.utils import timezone

from . import selectors
from .charts import stacked_bars, stacked_columns
from .models import Item
from .money import amount_text


class ClaimdeskAdminSite(admin.AdminSite):
    site_header = site_title = "Claimdesk staff"
    index_title = "Dashboard"
    index_template = "admin/claims/dashboard.html"
    enable_nav_sidebar = False  # the header's links and the dashboard lead everywhere; lists get the width

    def index(self, request, extra_context=None):
        incident = selectors.incident_for_dashboard(slug=request.GET.get("incident"))
        context = {"incidents": selectors.incident_list(), "incident": incident}
        if incident is not None:
            context.update(dashboard_context(incident))
        return super().index(request, {**context, **(extra_context or {})})


MONEY_SERIES = ["paid", "approved, not yet paid", "awaiting a decision"]
TIERS = [(Item.Approval.POLICY, "policy"), (Item.Approval.ONE, "one approval"), (Item.Approval.TWO, "two approvals")]


def dashboard_context(incident) -> dict:
    figures = selectors.dashboard_get(incident=incident, now=timezone.now())
    decimals = figures["decimals"]
    money_rows, per_asset = [], {}
    for (asset, kind), row in figures["money"].items():
        money_rows.append(
            {
                "asset": asset,
                "kind": kind.replace("_", " "),
                **{k: amount_text(v, decimals.get(asset)) for k, v in row.items()},
            }
        )
        total = per_asset.setdefault(asset, [0, 0, 0])
        total[0] += row["paid"]
        total[1] += row["approved"]
        total[2] += row["owed"] - row["paid"] - row["approved"]
    days = sorted({day for day, _ in figures["per_day"]})
    channels = sorted({channel for _, channel in figures["per_day"]})
    buckets = [label for label, _, _ in selectors.AGE_BUCKETS]
    queue_rows = [(bucket, [figures["queue"].get((bucket, tier), 0) for tier, _ in TIERS]) for bucket in buckets]
    return {
        "figures": figures,
        "money_rows": money_rows,
        "money_chart": stacked_bars(
            "Paid, approved and awaiting, per asset (each bar is what is owed in it)",
            [(asset, values) for asset, values in sorted(per_asset.items())],
            MONEY_SERIES,
            normalize=True,
        ),
        "days": [(day, [figures["per_day"].get((day, c), 0) for c in channels]) for day in days],
        "channels": channels,
        "days_chart": stacked_columns(
            "Claims per day, by channel",
            [(f"{day:%m-%d}", [figures["per_day"].get((day, c), 0) for c in channels]) for day in days],
            channels,
        ),
        "queue_rows": queue_rows,
        "tiers": [label for _, label in TIERS],
        "queue_chart": stacked_bars("Undecided items by age and tier", queue_rows, [label for _, label in TIERS]),
    }
