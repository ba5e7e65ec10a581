from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from hub.api import api
from telemetry import views as telemetry_views


def healthz(request):
    """Liveness for load balancers and docker-compose: the web process answers."""
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", telemetry_views.fleet, name="fleet"),
    path("devices/<str:device_id>/", telemetry_views.device, name="device"),
    path("api/", api.urls),
    path("account/", include("accounts.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz),
]
