"""Who may log in to the broker and which topics each login may read and write: one set of rules,
rendered into Mosquitto's ACL file (devices.broker_auth) and asked directly by a clustered
broker over HTTP (devices.broker_http).

The rules follow Mosquitto's ACL file: `pattern` rules hold for every login, with `%u` standing
for its username (a device's username is its id); an account of the hub's (bridge, gateway) gets
its role's `topic` rules as well. Anything no rule grants is refused.
"""
from devices.credentials import check_broker_hash
from devices.models import BrokerAccount, Device

READ, WRITE = "read", "write"

# Every login: its own topics only.
PATTERN_RULES = [
    (WRITE, "devices/%u/telemetry"),
    (WRITE, "devices/%u/status"),
    (WRITE, "devices/%u/commands/result"),
    (READ, "devices/%u/commands"),
]

ROLE_RULES = {
    BrokerAccount.Role.BRIDGE: [
        (READ, "devices/+/telemetry"),
        (READ, "devices/+/status"),
        (READ, "devices/+/commands/result"),
        (WRITE, "devices/+/commands"),
    ],
    BrokerAccount.Role.GATEWAY: [
        (WRITE, "devices/+/telemetry"),
        (WRITE, "devices/+/status"),
    ],
}

SHARED_PREFIX = "$share/"


def password_matches(username, password):
    """True if `password` is the broker password of the device or hub account named `username`."""
    stored = Device.objects.exclude(password_hash="").filter(pk=username).values_list("password_hash", flat=True).first()
    if stored is None:
        stored = BrokerAccount.objects.filter(username=username).values_list("password_hash", flat=True).first()
    return stored is not None and check_broker_hash(password, stored)


def may(username, access, topic_filter):
    """True if `username` may `access` (READ or WRITE) everything `topic_filter` names.

    A topic to publish to names itself; a subscription's filter names every topic it matches,
    and is granted only when all of them may be read (a clustered broker checks a subscription
    once, where Mosquitto checks each message delivered). `$share/<group>/` is the filter after it.
    """
    if not _usable_in_pattern(username):
        return False
    if topic_filter.startswith(SHARED_PREFIX) and access == READ:
        topic_filter = topic_filter[len(SHARED_PREFIX):].partition("/")[2]
    if not topic_filter or (access == WRITE and ("+" in topic_filter or "#" in topic_filter)):
        return False
    rules = [(rule_access, pattern.replace("%u", username)) for rule_access, pattern in PATTERN_RULES]
    account_role = BrokerAccount.objects.filter(username=username).values_list("role", flat=True).first()
    rules += ROLE_RULES.get(account_role, [])
    return any(rule_access == access and _covers(pattern, topic_filter) for rule_access, pattern in rules)


def _usable_in_pattern(username):
    """Mosquitto substitutes %u only with a whole, wildcard-free topic level; so do we."""
    return bool(username) and not any(character in username for character in "/+#\0")


def _covers(pattern, topic_filter):
    """True if every topic that `topic_filter` matches is matched by the rule's `pattern`."""
    wanted = topic_filter.split("/")
    granted = pattern.split("/")
    for position, level in enumerate(granted):
        if level == "#":
            return True
        if position >= len(wanted) or wanted[position] == "#":
            return False
        if level != "+" and level != wanted[position]:
            return False
    return len(wanted) == len(granted)
