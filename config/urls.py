from django.contrib import admin
from django.urls import include, path

from claims import views as claim_views

urlpatterns = [
    path("", claim_views.start_page, name="start"),
    path("healthz", claim_views.healthz, name="healthz"),
    path("", include("claims.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include("claims.api_urls")),
    path("admin/", admin.site.urls),
    # The ESPs' inbound webhooks, e.g. /anymail/mailgun/inbound_mime/, /anymail/postmark/inbound/
    # (claims/webhooks.py): they authenticate as anymail does, then keep the message.
    path("anymail/", include("anymail.urls")),
]
