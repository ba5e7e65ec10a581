"""Typed readers for HUB_* environment variables; each fails loudly on a bad value."""
import os
import sys

from django.core.exceptions import ImproperlyConfigured


def env_str(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name, default, minimum=None):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_list(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def settings_or_exit():
    """Reads hub/settings.py now, so that a missing or bad HUB_* setting stops the process with
    its own message and a non-zero status, not a traceback that ends in it."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS
    except ImproperlyConfigured as error:
        sys.exit(f"Telehub cannot start: {error}")
