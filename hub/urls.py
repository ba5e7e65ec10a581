from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

from accounts.views import limit_sign_ins
from hub.api import api
from hub.health import healthz, readyz
from hub.metrics import metrics
from telemetry import views as telemetry_views

urlpatterns = [
    path("", telemetry_views.fleet, name="fleet"),
    path("devices/<str:device_id>/", telemetry_views.device, name="device"),
    path("", include("alarms.urls")),
    path("api/", api.urls),
    path("account/", include("accounts.urls")),
    path("broker/http/", include("devices.urls")),
    # Both sign-in forms, before the apps' own routes to them: failed sign-ins are limited.
    path("accounts/login/", limit_sign_ins(LoginView.as_view()), name="login"),
    path("admin/login/", limit_sign_ins(admin.site.login)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics),
]
