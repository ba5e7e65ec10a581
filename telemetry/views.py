from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from devices import access


@login_required
def fleet(request):
    """Every device the user may see, live over one ws/fleet/ socket."""
    return render(request, "telemetry/fleet.html")


@login_required
def device(request, device_id):
    """One device: live charts, history, status and commands. Another user's device is a 404."""
    device = get_object_or_404(access.visible_devices(request.user), pk=device_id)
    context = {
        "device": device,
        "can_command": access.can_command(request.user, device.pk),
        "page_config": {
            "device": device.pk,
            "canCommand": access.can_command(request.user, device.pk),
            "maxPoints": settings.API_MAX_POINTS,
            "defaultTtl": settings.COMMAND_DEFAULT_TTL,
            "defaultTimeout": settings.COMMAND_DEFAULT_TIMEOUT,
        },
    }
    return render(request, "telemetry/device.html", context)
