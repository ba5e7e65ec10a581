from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from alarms.models import Severity
from devices import access


@login_required
def alarms(request):
    """Alarms on the devices the user may see, active first, live over a ws/fleet/ socket."""
    user = request.user
    page_config = {
        # Whose alarms the user may clear by hand: the devices they may command.
        "clearable": "*" if user.is_staff else list(access.commandable_devices(user).values_list("pk", flat=True)),
    }
    return render(request, "alarms/alarms.html", {"page_config": page_config, "severities": Severity.values})
