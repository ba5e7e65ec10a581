"""One retention pass of the bridge's upkeep (telemetry.upkeep), timed, on the hub's database
with its HUB_RETAIN_* settings.

Run by bench.growth in the hub's environment: python -m bench.retention_pass
Prints {"seconds": s, "deleted": {"raw": N, "minute": N, "hour": N}} as JSON."""
import asyncio
import json
import os
import time

import django


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    from telemetry.upkeep import Upkeep

    upkeep = Upkeep()
    started = time.monotonic()
    asyncio.run(upkeep.retention_pass())
    deleted = {resolution: upkeep.counts[f"expired_{resolution}"] for resolution in ("raw", "minute", "hour")}
    print(json.dumps({"seconds": round(time.monotonic() - started, 2), "deleted": deleted}))


if __name__ == "__main__":
    main()
