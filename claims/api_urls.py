from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import api, api_inbound, api_payouts, api_staff

router = DefaultRouter()
router.register("claims", api.ClaimViewSet, basename="claim")
router.register("incidents", api.IncidentViewSet, basename="incident")
# Staff operations, each acting for a person (api_staff.py).
router.register("items", api_staff.ItemViewSet, basename="item")
router.register("claims", api_staff.ClaimDecisionViewSet, basename="claim-decision")
router.register("limit-changes", api_staff.LimitChangeViewSet, basename="limit-change")
# E-mail received, as export_inbound writes it (api_inbound.py).
router.register("inbound-messages", api_inbound.InboundMessageViewSet, basename="inbound-message")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # Payouts, for finance (api_payouts.py). Path parameters are checked by the views, so a
    # malformed one answers a JSON 404 like every other error.
    path("incidents/<str:slug>/payout-batches/", api_payouts.PayoutBatchesView.as_view(), name="payout-batches"),
    path(
        "incidents/<str:slug>/payout-batches/<str:number>/", api_payouts.PayoutBatchView.as_view(), name="payout-batch"
    ),
    path(
        "incidents/<str:slug>/payout-batches/<str:number>/treasury/<str:kind>/",
        api_payouts.TreasuryFileView.as_view(),
        name="payout-treasury-file",
    ),
    path("incidents/<str:slug>/reconciliation/", api_payouts.ReconciliationView.as_view(), name="reconciliation"),
    path("payout-confirmations/", api_payouts.ConfirmationsView.as_view(), name="payout-confirmations"),
    path("payout-lines/<str:key>/release/", api_payouts.ReleaseView.as_view(), name="payout-line-release"),
    *router.urls,
]
