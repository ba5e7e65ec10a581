"""Commands' changes of status, counted in the process that makes each change: a web process
counts the commands it creates (pending), the bridge every later step."""
from prometheus_client import Counter

COMMANDS = Counter("telehub_commands", "Commands that reached each status, counted as they reach it.", ["status"])
