from django.contrib import admin

from telemetry.models import LatestValue, Reading


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    list_display = ["device", "key", "ts", "value"]
    list_filter = ["kind"]
    search_fields = ["device__id", "key"]
    # The table grows large: no count query for the changelist, no joins for the filters.
    show_full_result_count = False
    list_select_related = False


@admin.register(LatestValue)
class LatestValueAdmin(admin.ModelAdmin):
    list_display = ["device", "key", "ts", "value"]
    search_fields = ["device__id", "key"]
