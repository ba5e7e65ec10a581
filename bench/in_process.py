"""Django in the bench's own process, for the benches that call the hub's code directly
(store_cost, rollup_cost, recheck_cost) rather than run its processes (bench.stack)."""
import os
import secrets

import django


def setup_django(database_url):
    """Sets Django up on `database_url` as production runs it: out of debug mode whatever the
    caller's shell exports, as bench.stack runs the hub's processes."""
    os.environ["HUB_DATABASE_URL"] = database_url
    os.environ["HUB_DEBUG"] = "false"
    os.environ.setdefault("HUB_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
