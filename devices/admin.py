from django.contrib import admin

from devices.models import Command, Device


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "online", "last_seen"]
    list_filter = ["online", "groups"]
    search_fields = ["id", "name", "owner__username"]
    filter_horizontal = ["groups"]
    readonly_fields = ["online", "last_seen", "seq", "created"]


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = ["id", "device", "name", "status", "created_by", "created", "finished_at"]
    list_filter = ["status", "name"]
    search_fields = ["device__id", "name", "created_by__username"]
    readonly_fields = ["id", "created", "expires_at", "sent_at", "finished_at", "result", "error"]
