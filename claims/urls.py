from django.urls import path

from . import views

app_name = "claims"
urlpatterns = [
    path("claims/new/<slug:slug>/", views.claim_new, name="new"),
    path("claims/sent/", views.claim_sent, name="sent"),
    path("claims/verify/<str:token>/", views.claim_verify, name="verify"),
    path("claims/status/<str:token>/", views.claim_status, name="status"),
]
