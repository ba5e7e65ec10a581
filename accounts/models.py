from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A user's key for scripts calling the API. The hub keeps only its SHA-256 digest:
    the token itself is shown once, when it is made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, to tell tokens apart.")
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    @property
    def active(self):
        return self.revoked is None

    def __str__(self):
        return f"{self.prefix}… {self.name} ({self.user})"
