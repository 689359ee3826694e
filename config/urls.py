from django.contrib import admin
from django.urls import path

from claims import views as claim_views

urlpatterns = [
    path("", claim_views.start_page, name="start"),
    path("admin/", admin.site.urls),
]
