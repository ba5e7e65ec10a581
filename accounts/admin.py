from django.contrib import admin

from accounts.models import ApiToken
from accounts.tokens import revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "created", "last_used", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "name", "prefix", "digest", "created", "last_used", "revoked"]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request):
        return False  # Tokens are made on the tokens page or with manage.py apitoken, which show them once.

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request, queryset):
        self.message_user(request, f"Revoked {revoke(queryset)} tokens.")
