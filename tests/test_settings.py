"""hub/settings.py read in fresh processes with the environment an operator gives: safe without
debug, loud when the secret key is missing, and Django's deployment checks clean behind TLS."""
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "HUB_SECRET_KEY": secrets.token_urlsafe(50),
    "HUB_HTTPS": "true",
    "HUB_ALLOWED_HOSTS": "hub.example.com",
}


def run(args, tmp_path, **env):
    """A Python process in the project with only these HUB_* variables, and its data in tmp_path."""
    bare = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
        env={**bare, "DJANGO_SETTINGS_MODULE": "hub.settings", "HUB_DATA_DIR": str(tmp_path), **env},
    )


def read_settings(tmp_path, *names, **env):
    code = "import json; from django.conf import settings as s; print(json.dumps({n: getattr(s, n) for n in %r}))"
    done = run(["-c", code % (names,)], tmp_path, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_a_secret_key_outside_debug_mode_nothing_starts_and_it_says_why(tmp_path):
    done = run(["manage.py", "check"], tmp_path)
    assert done.returncode != 0
    assert "HUB_SECRET_KEY is not set" in done.stderr and "HUB_DEBUG=true" in done.stderr
    assert not (tmp_path / "secret_key").exists()


def test_debug_mode_is_off_unless_asked(tmp_path):
    assert read_settings(tmp_path, "DEBUG", HUB_SECRET_KEY="k")["DEBUG"] is False
    assert read_settings(tmp_path, "DEBUG", HUB_SECRET_KEY="k", HUB_DEBUG="true")["DEBUG"] is True


def test_in_debug_mode_a_key_is_made_once_and_kept(tmp_path):
    first = read_settings(tmp_path, "SECRET_KEY", HUB_DEBUG="true")["SECRET_KEY"]
    assert len(first) > 50 and (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert read_settings(tmp_path, "SECRET_KEY", HUB_DEBUG="true")["SECRET_KEY"] == first


SECURITY = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
            "SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS", "ALLOWED_HOSTS")


def test_plain_http_by_default(tmp_path):
    assert read_settings(tmp_path, *SECURITY, HUB_SECRET_KEY="k") == {
        "SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False, "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0, "SECURE_PROXY_SSL_HEADER": None, "CSRF_TRUSTED_ORIGINS": [],
        "ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"],
    }


def test_behind_a_tls_proxy(tmp_path):
    env = {**PRODUCTION, "HUB_TRUSTED_ORIGINS": "https://ops.example.com"}
    assert read_settings(tmp_path, *SECURITY, **env) == {
        "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000, "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CSRF_TRUSTED_ORIGINS": ["https://ops.example.com"], "ALLOWED_HOSTS": ["hub.example.com"],
    }
    assert read_settings(tmp_path, "SECURE_HSTS_SECONDS", **env, HUB_HSTS_SECONDS="600") == {"SECURE_HSTS_SECONDS": 600}


@pytest.mark.parametrize("variable, value, message", [
    ("HUB_TRUSTED_ORIGINS", "ops.example.com", "HUB_TRUSTED_ORIGINS takes origins such as"),
    ("HUB_TRUSTED_ORIGINS", "https://*.example.com", "HUB_TRUSTED_ORIGINS takes origins such as"),
    ("HUB_HTTPS", "sometimes", "HUB_HTTPS must be true or false"),
    ("HUB_HSTS_SECONDS", "-1", "HUB_HSTS_SECONDS must be at least 0"),
    ("HUB_REDIS_SENTINELS", "sentinel-1", "HUB_REDIS_SENTINELS takes host:port pairs"),
    ("HUB_REDIS_SENTINELS", "sentinel-1:26379,sentinel-2:0", "HUB_REDIS_SENTINELS takes host:port pairs"),
    ("HUB_DATABASE_REPLICA_URL", "nonsense://replica", "HUB_DATABASE_REPLICA_URL is not a database URL"),
    ("HUB_BRIDGE_ID", "a/b", "HUB_BRIDGE_ID 'a/b' cannot name a bridge"),
    ("HUB_BRIDGE_ID", "x" * 49, "cannot name a bridge: a bridge id takes 1 to 48 letters"),
    ("HUB_BRIDGE_ID", ".hidden", "HUB_BRIDGE_ID '.hidden' cannot name a bridge"),
    ("HUB_MQTT_SHARED_GROUP", "a+b", "HUB_MQTT_SHARED_GROUP takes 1 to 48 letters"),
    ("HUB_BRIDGE_LEASE_SECONDS", "2", "HUB_BRIDGE_LEASE_SECONDS must be at least 3"),
])
def test_bad_values_stop_the_start_with_the_reason(tmp_path, variable, value, message):
    done = run(["manage.py", "check"], tmp_path, **{**PRODUCTION, variable: value})
    assert done.returncode != 0 and message in done.stderr


def test_postgresql_connections_run_without_jit_and_keep_the_urls_own_options(tmp_path):
    databases = read_settings(
        tmp_path, "DATABASES", **PRODUCTION, HUB_DATABASE_URL="postgres://hub@db/hub?sslmode=require",
        HUB_DATABASE_REPLICA_URL="postgres://hub@replica/hub?options=-c%20statement_timeout%3D5000",
    )["DATABASES"]
    assert databases["default"]["OPTIONS"] == {"sslmode": "require", "options": "-c jit=off"}
    assert databases["replica"]["OPTIONS"] == {"options": "-c statement_timeout=5000 -c jit=off"}


def test_redis_is_one_server_or_sentinels_never_both(tmp_path):
    done = run(["manage.py", "check"], tmp_path, **PRODUCTION, HUB_REDIS_URL="redis://redis:6379/0",
               HUB_REDIS_SENTINELS="sentinel-1:26379")
    assert done.returncode != 0 and "HUB_REDIS_URL or HUB_REDIS_SENTINELS, not both" in done.stderr


def test_the_deployment_checks_pass_but_for_the_hsts_scope_left_to_the_domains_owner(tmp_path):
    """docs/security.md explains the two warnings left: HSTS for subdomains and preloading."""
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, **PRODUCTION)
    warnings = sorted(set(re.findall(r"\((security\.\w+)\)", done.stderr + done.stdout)))
    assert warnings == ["security.W005", "security.W021"], done.stderr
    docs = (ROOT / "docs" / "security.md").read_text()
    assert all(warning in docs for warning in warnings)


def test_each_bridge_is_named_by_its_host_unless_told_and_shares_the_load_by_default(tmp_path):
    """In compose each container's host name is its own: replicas get an identity each."""
    names = ("BRIDGE_ID", "MQTT_CLIENT_ID", "MQTT_SHARED_GROUP")
    host = socket.gethostname().split(".")[0]
    assert read_settings(tmp_path, *names, HUB_SECRET_KEY="k") == {
        "BRIDGE_ID": host, "MQTT_CLIENT_ID": f"telehub-bridge-{host}", "MQTT_SHARED_GROUP": "telehub",
    }
    assert read_settings(tmp_path, *names, HUB_SECRET_KEY="k", HUB_BRIDGE_ID="b-2", HUB_MQTT_SHARED_GROUP="") == {
        "BRIDGE_ID": "b-2", "MQTT_CLIENT_ID": "telehub-bridge-b-2", "MQTT_SHARED_GROUP": "",
    }
    told = read_settings(tmp_path, "MQTT_CLIENT_ID", HUB_SECRET_KEY="k", HUB_BRIDGE_ID="b-2", HUB_MQTT_CLIENT_ID="mine")
    assert told == {"MQTT_CLIENT_ID": "mine"}
