from django.contrib import admin
from django.urls import include, path, re_path

from claims import views as claim_views
from claims import views_two_factor, webhooks
from claims.health import Health

urlpatterns = [
    path("", claim_views.start_page, name="start"),
    path("healthz", claim_views.healthz, name="healthz"),
    path("health/", Health.as_view(), name="health"),
    path("", include("claims.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include("claims.api_urls")),
    path("admin/2fa/setup/", views_two_factor.two_factor_setup, name="two_factor_setup"),
    path("admin/2fa/verify/", views_two_factor.two_factor_verify, name="two_factor_verify"),
    path("admin/", admin.site.urls),
    # The ESPs' inbound webhooks, e.g. /anymail/mailgun/inbound_mime/, /anymail/postmark/inbound/
    # (claims/webhooks.py): they authenticate as anymail does, then keep the message. Mailgun's and
    # Postmark's are anymail's views, routed first so that a field anymail cannot put in a header
    # does not lose the message.
    re_path(r"^anymail/mailgun/inbound(_mime)?/$", webhooks.MailgunInboundView.as_view()),
    path("anymail/postmark/inbound/", webhooks.PostmarkInboundView.as_view()),
    path("anymail/", include("anymail.urls")),
]
