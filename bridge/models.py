from django.db import models


class BridgeLease(models.Model):
    """A bridge's word that it is alive, renewed every few seconds (bridge.leases).

    Once it lapses, a survivor takes it over (`holder` becomes the survivor) to drain the dead
    bridge's broker session, logging in as `username` with `client_id` (bridge.drain)."""

    bridge_id = models.CharField(max_length=48, primary_key=True)
    client_id = models.CharField(max_length=128)
    username = models.CharField(max_length=64, blank=True)
    holder = models.CharField(max_length=48)
    expires = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.bridge_id} (held by {self.holder} until {self.expires:%H:%M:%S})"
