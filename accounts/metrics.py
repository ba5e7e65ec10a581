"""The accounts app's Prometheus metrics in a web process (served at /metrics, hub/metrics.py)."""
from prometheus_client import Counter

SIGNINS_THROTTLED = Counter(
    "telehub_signins_throttled", "Sign-ins refused with 429 for too many failures (accounts/signin_limits.py)."
)
