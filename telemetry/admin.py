from django.contrib import admin

from telemetry.models import LatestValue

# Readings have no admin: Django's admin refuses models keyed by a composite primary key, and
# the history API (and the dashboards) show a device's readings.


@admin.register(LatestValue)
class LatestValueAdmin(admin.ModelAdmin):
    list_display = ["device", "key", "ts", "value"]
    search_fields = ["device__id", "key"]
