"""Broker credentials: a device's MQTT password (its token) and the hub's own broker accounts.

The broker checks passwords against Mosquitto's PBKDF2-SHA512 format (`$7$…`, what
`mosquitto_passwd` writes), so the hub stores exactly that hash and nothing else: the password
file is rebuilt from the database whenever it changes (devices.broker_auth). Tokens are 256
random bits, so Mosquitto's default 101 iterations lose nothing to guessing while keeping a
fleet's reconnect storm cheap for the broker.
"""
import base64
import hashlib
import hmac
import secrets

from django.utils import timezone

TOKEN_PREFIX = "dvt_"
ITERATIONS = 101
SALT_BYTES = 12


def new_token():
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def broker_hash(password, salt=None):
    """The password in Mosquitto's password-file format: $7$iterations$salt$hash, base64."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_broker_hash(password, stored):
    """True if `password` matches a hash made by broker_hash or mosquitto_passwd."""
    try:
        _, kind, iterations, salt, digest = stored.split("$")
        if kind != "7":
            return False
        expected = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(expected).decode(), digest)


def issue_device_token(device):
    """Gives `device` a new MQTT password, replacing any other; returns it (it is not kept)."""
    token = new_token()
    device.password_hash = broker_hash(token)
    device.credentials_changed = timezone.now()
    device.save(update_fields=["password_hash", "credentials_changed"])
    return token


def revoke_device_token(device):
    """The device may no longer connect; the broker drops it at its next reload."""
    device.password_hash = ""
    device.credentials_changed = timezone.now()
    device.save(update_fields=["password_hash", "credentials_changed"])


def ensure_account(username, password, role):
    """Creates or updates a broker account so that `password` works for it; returns it."""
    from devices.models import BrokerAccount

    account = BrokerAccount.objects.filter(username=username).first()
    if account is not None and account.role == role and check_broker_hash(password, account.password_hash):
        return account
    account = account or BrokerAccount(username=username)
    account.role = role
    account.password_hash = broker_hash(password)
    account.changed = timezone.now()
    account.full_clean()
    account.save()
    return account
