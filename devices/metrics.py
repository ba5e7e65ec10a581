"""Commands' changes of status, counted in the process that makes each change: a web process
counts the commands it creates (pending), the bridge every later step."""
from prometheus_client import Counter

COMMANDS = Counter("telehub_commands", "Commands that reached each status, counted as they reach it.", ["status"])

BROKER_HTTP_CHECKS = Counter(
    "telehub_broker_http_checks",
    "A clustered broker's questions to /broker/http/ (devices.broker_http), by check and answer: "
    "allow, deny, limited (a login refused for too many failed ones), bad_request, unauthorized.",
    ["check", "result"],
)
