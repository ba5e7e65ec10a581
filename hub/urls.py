from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.urls import include, path
from django.views.generic import TemplateView


def healthz(request):
    """Liveness for load balancers and docker-compose: the web process answers."""
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", login_required(TemplateView.as_view(template_name="home.html")), name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", healthz),
]
