from django.apps import AppConfig
from django.db.models.signals import pre_delete


class TelemetryConfig(AppConfig):
    name = "telemetry"
    verbose_name = "Telemetry"

    def ready(self):
        from devices.models import Device
        from telemetry.deletion import lock_device_before_delete

        pre_delete.connect(lock_device_before_delete, sender=Device, dispatch_uid="telemetry.lock_device_before_delete")
