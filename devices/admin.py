from django.contrib import admin, messages

from devices.credentials import issue_device_token, revoke_device_token
from devices.models import BrokerAccount, Command, Device


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "online", "can_connect", "last_seen"]
    list_filter = ["online", "groups"]
    search_fields = ["id", "name", "owner__username"]
    filter_horizontal = ["groups"]
    readonly_fields = ["online", "last_seen", "seq", "credentials_changed", "created"]
    actions = ["rotate_password", "revoke_password"]

    @admin.display(boolean=True, description="may connect")
    def can_connect(self, device):
        return device.can_connect

    @admin.action(description="Give the selected devices new MQTT passwords (shown once)")
    def rotate_password(self, request, queryset):
        for device in queryset:
            password = issue_device_token(device)
            self.message_user(request, f"{device.pk}: new MQTT password {password} (shown only now)", messages.WARNING)

    @admin.action(description="Revoke the selected devices' MQTT passwords")
    def revoke_password(self, request, queryset):
        for device in queryset:
            revoke_device_token(device)
        self.message_user(request, f"Revoked {len(queryset)} MQTT passwords: the broker drops them within seconds.")


@admin.register(BrokerAccount)
class BrokerAccountAdmin(admin.ModelAdmin):
    """Accounts are made by `manage.py brokeraccount` (which shows the password once) or by a
    bridge for itself; here they can be seen and deleted."""

    list_display = ["username", "role", "changed"]
    list_filter = ["role"]
    readonly_fields = ["username", "role", "changed"]

    def has_add_permission(self, request):
        return False


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    """The audit trail of commands: who sent what to which device, when, and how it ended.
    Read-only: commands are sent from the dashboards and the API, and the trail is not edited."""

    list_display = ["created", "device", "name", "sent_by", "status", "finished_at"]
    list_filter = ["status", ("device", admin.RelatedOnlyFieldListFilter), "created_by_name", "name"]
    search_fields = ["device__id", "name", "created_by_name"]
    date_hierarchy = "created"
    list_select_related = ["device"]
    fields = ["id", "device", "name", "params", "created_by_name", "created_by", "status", "ttl", "timeout",
              "created", "expires_at", "sent_at", "answer_by", "finished_at", "result", "error"]

    @admin.display(description="sent by", ordering="created_by_name")
    def sent_by(self, command):
        return command.created_by_name or "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
