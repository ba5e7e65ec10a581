"""Alarm rules, alarms with their history, and notifications with their delivery log, for staff.
Alarms change through alarms.lifecycle only (so every change is kept and announced): here
they are read-only."""
from django.contrib import admin

from alarms.models import Alarm, AlarmChange, AlarmRule, DeliveryAttempt, Notification, NotificationDestination


@admin.register(AlarmRule)
class AlarmRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "severity", "changed"]
    list_filter = ["kind", "severity"]
    search_fields = ["name", "owner__username", "devices__id"]
    filter_horizontal = ["devices", "destinations"]
    readonly_fields = ["created", "changed"]


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AlarmChangeInline(ReadOnly, admin.TabularInline):
    model = AlarmChange
    fields = ["event", "by", "comment", "at", "notified_at"]
    extra = 0


@admin.register(Alarm)
class AlarmAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["rule", "device", "severity", "state", "acknowledged", "raised_at", "cleared_at", "count"]
    list_filter = ["state", "severity", "acknowledged"]
    search_fields = ["device__id", "rule__name"]
    inlines = [AlarmChangeInline]


@admin.register(NotificationDestination)
class NotificationDestinationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "kind", "created"]
    list_filter = ["kind"]
    search_fields = ["name", "owner__username", "url"]


class DeliveryAttemptInline(ReadOnly, admin.TabularInline):
    model = DeliveryAttempt
    fields = ["at", "ok", "answer"]
    extra = 0


@admin.register(Notification)
class NotificationAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["destination", "event", "status", "attempts", "created", "sent_at"]
    list_filter = ["status", "event"]
    exclude = ["changes"]
    inlines = [DeliveryAttemptInline]
