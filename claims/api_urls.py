from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import api, api_staff

router = DefaultRouter()
router.register("claims", api.ClaimViewSet, basename="claim")
router.register("incidents", api.IncidentViewSet, basename="incident")
# Staff operations, each acting for a person (api_staff.py).
router.register("items", api_staff.ItemViewSet, basename="item")
router.register("claims", api_staff.ClaimDecisionViewSet, basename="claim-decision")
router.register("limit-changes", api_staff.LimitChangeViewSet, basename="limit-change")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    *router.urls,
]
