"""Which broker login a bridge uses.

With HUB_BROKER_AUTH_DIR the hub keeps the broker's logins, and each bridge gets an account of
its own, `<HUB_MQTT_URL's user>.<HUB_BRIDGE_ID>` with HUB_MQTT_URL's password, which it
registers itself (bridge.broker_auth_sync): the project's Mosquitto makes a client's username
its client id, so one account per bridge is one persistent session per bridge. Every bridge
knows the password, so a survivor can log in as a dead peer to drain its session
(bridge.drain). Without HUB_BROKER_AUTH_DIR the logins are not the hub's to make: every bridge
uses HUB_MQTT_URL's, and the client id (HUB_MQTT_CLIENT_ID) tells the sessions apart.
"""


def own_address(address, bridge_id, manages_logins):
    """`address` (a bridge.mqtt.BrokerAddress) with this bridge's own login."""
    if not manages_logins or not address.username:
        return address
    return address.with_login(f"{address.username}.{bridge_id}", address.password)
