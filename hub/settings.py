"""Telehub settings. Every knob is a HUB_* environment variable, read here and only here.

The README's settings table documents each one.
"""
import ipaddress
import re
import secrets
import socket
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from hub.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("HUB_DATA_DIR", str(BASE_DIR / "var")))


DEBUG = env_bool("HUB_DEBUG", False)


def _secret_key():
    """HUB_SECRET_KEY; in debug mode only, a random key kept in DATA_DIR so a fresh clone runs
    without setup (`manage.py runhub` runs in debug mode)."""
    key = env_str("HUB_SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "HUB_SECRET_KEY is not set. Set it to a long random string, the same for every web process "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(50))'), or set HUB_DEBUG=true "
            "on a development machine."
        )
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("HUB_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])


def _trusted_origins():
    origins = env_list("HUB_TRUSTED_ORIGINS", [])
    for origin in origins:
        if not re.fullmatch(r"https?://[^/*\s]+", origin):
            raise ImproperlyConfigured(f"HUB_TRUSTED_ORIGINS takes origins such as https://hub.example.com, not {origin!r}")
    return origins


# Served over HTTPS by a TLS proxy in front of daphne (README, "Run it in production"): cookies
# only over HTTPS, HSTS, plain HTTP redirected, and the proxy's X-Forwarded-Proto believed.
# Only the proxy may reach daphne then, or anyone could claim to have come over HTTPS.
HTTPS = env_bool("HUB_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
# Health checks and Prometheus ask daphne directly, over HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_HSTS_SECONDS = env_int("HUB_HSTS_SECONDS", 31536000, minimum=0) if HTTPS else 0
# Origins other than the hub's own whose pages may send signed-in forms and API calls and open
# websockets (hub/origins.py); the hub's own origin always may.
CSRF_TRUSTED_ORIGINS = _trusted_origins()

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "accounts",
    "devices",
    "telemetry",
    "bridge",
    "alarms",
    "hub",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hub.urls"
ASGI_APPLICATION = "hub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "hub" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _parse_database_url(variable, url):
    """The Django database of a URL. PostgreSQL's JIT is switched off, after any options the URL
    gives: the hub's statements are short, but many name the partitioned readings, and on a filled
    database the planner's estimates made JIT compile every day partition's expressions (0.8 s
    for a rollup batch of a few ms, docs/performance.md, "The rollup job on a filled database")."""
    try:
        config = dj_database_url.parse(url, conn_max_age=600, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{variable} is not a database URL: {exc}")
    if config["ENGINE"] == "django.db.backends.postgresql":
        options = config.setdefault("OPTIONS", {})
        options["options"] = f"{options.get('options', '')} -c jit=off".lstrip()
    return config


def _database():
    url = env_str("HUB_DATABASE_URL", f"sqlite:///{DATA_DIR / 'telehub.sqlite3'}")
    config = _parse_database_url("HUB_DATABASE_URL", url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # The bridge writes while daphne reads: WAL lets readers run beside the writer,
        # IMMEDIATE takes the write lock up front so a busy database waits instead of failing.
        # A flush touches the newest page of thousands of series: a page cache of 128 MiB keeps
        # them in memory. The bridge copies the WAL back as it grows, on a thread of its own
        # (telemetry.checkpoints); a writer's own checkpoint at 20,000 pages (80 MiB) bounds it.
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                            "PRAGMA cache_size=-131072; PRAGMA wal_autocheckpoint=20000;",
            "transaction_mode": "IMMEDIATE",
            "timeout": env_int("HUB_DB_LOCK_TIMEOUT", 20, minimum=1),
        }
    return config


DATABASES = {"default": _database()}
# A read replica (PostgreSQL streaming replication) for history and lists: telemetry.api reads
# them from READ_DATABASE; writes, and who may see what, stay on the primary (docs/deployment.md).
REPLICA_URL = env_str("HUB_DATABASE_REPLICA_URL")
if REPLICA_URL:
    DATABASES["replica"] = _parse_database_url("HUB_DATABASE_REPLICA_URL", REPLICA_URL)
READ_DATABASE = "replica" if REPLICA_URL else "default"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# Redis: one server (HUB_REDIS_URL), or the master that Sentinel names (HUB_REDIS_SENTINELS,
# HUB_REDIS_SENTINEL_MASTER), which every client follows through a failover. Neither: no Redis
# (runhub's in-process layer). The channel layer, the cache and /readyz all use it.
REDIS_URL = env_str("HUB_REDIS_URL")


def _redis_sentinels():
    sentinels = []
    for item in env_list("HUB_REDIS_SENTINELS", []):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"HUB_REDIS_SENTINELS takes host:port pairs separated by commas, not {item!r}")
        sentinels.append((host.strip("[]"), int(port)))
    if sentinels and env_str("HUB_REDIS_URL"):
        raise ImproperlyConfigured("Set HUB_REDIS_URL or HUB_REDIS_SENTINELS, not both")
    return sentinels


def _redis_host(**options):
    """One of channels-redis's hosts: the server, or the master found through Sentinel; None: no Redis."""
    if sentinels := _redis_sentinels():
        return {"master_name": env_str("HUB_REDIS_SENTINEL_MASTER", "mymaster"), "sentinels": sentinels, **options}
    if url := env_str("HUB_REDIS_URL"):
        return {"address": url, **options}
    return None


REDIS_SENTINELS = _redis_sentinels()
REDIS_SENTINEL_MASTER = env_str("HUB_REDIS_SENTINEL_MASTER", "mymaster")
USES_REDIS = bool(REDIS_URL or REDIS_SENTINELS)


CORE_LAYER_SOCKET_TIMEOUT = 30


def _channel_layers():
    if _redis_host() is None:
        # One process only: what `manage.py runhub` uses when no Redis is given.
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    flavour = env_str("HUB_CHANNEL_LAYER", "pubsub")
    backends = {
        "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "core": "channels_redis.core.RedisChannelLayer",
    }
    if flavour not in backends:
        raise ImproperlyConfigured(f"HUB_CHANNEL_LAYER must be pubsub or core, not {flavour!r}")
    config = {"hosts": [_redis_host()]}
    if flavour == "core":
        # The core layer receives with a blocking pop of up to 5 s; redis-py 8 times socket reads
        # out after 5 s by default, which failed idle receives (channels_redis #422) and with
        # them the bridge's command listener. Give reads room beyond the pop.
        config["hosts"] = [_redis_host(socket_timeout=CORE_LAYER_SOCKET_TIMEOUT)]
        # Lists in Redis, bounded per channel: a full channel drops what is sent to it. Each web
        # process's live relay gets one message per flush of the bridge, so give it room for
        # seconds of them (docs/performance.md).
        config["capacity"] = env_int("HUB_CHANNEL_CAPACITY", 1000, minimum=1)
    return {"default": {"BACKEND": backends[flavour], "CONFIG": config}}


CHANNEL_LAYERS = _channel_layers()


def _caches():
    """Redis when there is one, so every web process shares the sign-in counts; else process memory."""
    if not USES_REDIS:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "telehub"}
    if REDIS_SENTINELS:
        cache.update(LOCATION=REDIS_SENTINEL_MASTER, OPTIONS={"pool_class": "hub.sentinel.CachePool", "sentinels": REDIS_SENTINELS})
    return {"default": cache}


CACHES = _caches()

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed sign-ins allowed per window before more are refused (accounts/signin_limits.py).
SIGNIN_WINDOW_SECONDS = env_int("HUB_SIGNIN_WINDOW", 900, minimum=1)
SIGNIN_LIMITS = {
    "username_and_address": env_int("HUB_SIGNIN_LIMIT_PER_USERNAME_AND_ADDRESS", 5, minimum=1),
    "address": env_int("HUB_SIGNIN_LIMIT_PER_ADDRESS", 20, minimum=1),
    "username": env_int("HUB_SIGNIN_LIMIT_PER_USERNAME", 100, minimum=1),
}
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# WhiteNoise serves the apps' static files itself, with or without collectstatic; without it,
# STATIC_ROOT does not exist, which WhiteNoise would warn about at every start.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ")

LOG_LEVEL = env_str("HUB_LOG_LEVEL", "INFO").upper()
# plain: lines for people; json: one JSON object a line, with fields such as device and reason (hub/logs.py).
LOG_FORMAT = env_str("HUB_LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"HUB_LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "hub.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {name: {"level": "WARNING"} for name in ("daphne", "amqtt", "transitions")},
}

# MQTT and the bridge. An empty HUB_MQTT_URL means "not configured": runbridge then uses the
# local broker, runhub starts its embedded one.
MQTT_URL = env_str("HUB_MQTT_URL")


def _mqtt_public_url():
    """The broker as devices reach it, printed by adddevice; empty: HUB_MQTT_URL's, without its login."""
    url = env_str("HUB_MQTT_PUBLIC_URL")
    if url and not re.fullmatch(r"mqtts?://[^@/\s]+", url):
        raise ImproperlyConfigured(
            f"HUB_MQTT_PUBLIC_URL takes a broker address with no login, such as mqtts://mqtt.example.com:8883, not {url!r}"
        )
    return url


MQTT_PUBLIC_URL = _mqtt_public_url()
# What a bridge's id, and a shared group's name, may hold: safe in an MQTT client id, in a broker
# username (after the dot of HUB_MQTT_URL's user) and in a topic level.
IDENTIFIER = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}"


def _bridge_id():
    """HUB_BRIDGE_ID, or this machine's host name (in compose, each container's own)."""
    given = env_str("HUB_BRIDGE_ID")
    bridge_id = given or socket.gethostname().split(".")[0]
    if not re.fullmatch(IDENTIFIER, bridge_id):
        named = "HUB_BRIDGE_ID" if given else "HUB_BRIDGE_ID is not set, and the host name"
        raise ImproperlyConfigured(
            f"{named} {bridge_id!r} cannot name a bridge: a bridge id takes 1 to 48 letters, digits, '_', '-' "
            "and '.', starting with a letter or digit"
        )
    return bridge_id


def _shared_group():
    group = env_str("HUB_MQTT_SHARED_GROUP", "telehub")
    if group and not re.fullmatch(IDENTIFIER, group):
        raise ImproperlyConfigured(
            f"HUB_MQTT_SHARED_GROUP takes 1 to 48 letters, digits, '_', '-' and '.' (or nothing: no sharing), not {group!r}"
        )
    return group


# Each bridge's own identity: its client id, its persistent session, its lease (bridge.leases)
# and, with HUB_BROKER_AUTH_DIR, its broker account (bridge.identity).
BRIDGE_ID = _bridge_id()
MQTT_CLIENT_ID = env_str("HUB_MQTT_CLIENT_ID") or f"telehub-bridge-{BRIDGE_ID}"
MQTT_SHARED_GROUP = _shared_group()
# A bridge renews its lease every third of this; a bridge whose lease has lapsed this long is
# taken for dead, and a survivor drains its broker session (docs/reliability.md).
BRIDGE_LEASE_SECONDS = env_int("HUB_BRIDGE_LEASE_SECONDS", 10, minimum=3)
MAX_PAYLOAD_BYTES = env_int("HUB_MAX_PAYLOAD_BYTES", 65536, minimum=1)
BATCH_WINDOW_MS = env_int("HUB_BATCH_WINDOW_MS", 2, minimum=0)
BRIDGE_STATS_INTERVAL = env_int("HUB_BRIDGE_STATS_INTERVAL", 60, minimum=1)
# Touched every few seconds while the bridge is connected to the broker, storing readings and
# sweeping commands; health checks read its age. It stops when readings have waited
# BRIDGE_STALL_SECONDS unstored, or the command sweep has not completed a pass for as long.
BRIDGE_HEARTBEAT_FILE = Path(env_str("HUB_BRIDGE_HEARTBEAT_FILE", str(DATA_DIR / "bridge.heartbeat")))
BRIDGE_STALL_SECONDS = env_int("HUB_BRIDGE_STALL_SECONDS", 30, minimum=1)
# Readings the bridge holds unstored (the database slow or away) before it stops reading from
# the broker, which then queues the backlog; QoS 0 readings past it are dropped (backlog_full).
BRIDGE_MAX_HELD_READINGS = env_int("HUB_BRIDGE_MAX_HELD_READINGS", 100000, minimum=1)
# Prometheus metrics (docs/operations.md): the bridge serves its own on this address and port
# (0: off); each web process serves /metrics to loopback and these addresses or networks only.
BRIDGE_METRICS_PORT = env_int("HUB_BRIDGE_METRICS_PORT", 9108, minimum=0)
if BRIDGE_METRICS_PORT > 65535:
    raise ImproperlyConfigured(f"HUB_BRIDGE_METRICS_PORT must be a port number, not {BRIDGE_METRICS_PORT}")
BRIDGE_METRICS_ADDRESS = env_str("HUB_BRIDGE_METRICS_ADDRESS", "127.0.0.1")


def _metrics_allowed_ips():
    try:
        return [str(ipaddress.ip_network(item, strict=False)) for item in env_list("HUB_METRICS_ALLOWED_IPS", [])]
    except ValueError as error:
        raise ImproperlyConfigured(f"HUB_METRICS_ALLOWED_IPS takes addresses and networks such as 10.0.0.0/8: {error}")


METRICS_ALLOWED_IPS = _metrics_allowed_ips()
# Where the bridge writes Mosquitto's password and ACL files from the registry; empty: it does not.
BROKER_AUTH_DIR = env_str("HUB_BROKER_AUTH_DIR")
# The shared secret a clustered broker (EMQX) sends as `Authorization: Bearer …` to ask
# /broker/http/authn and /broker/http/authz (devices.broker_http); empty: those routes are 404.
BROKER_HTTP_AUTH_TOKEN = env_str("HUB_BROKER_HTTP_AUTH_TOKEN")
# Each device's budget; messages over it are dropped and counted as rate_limited.
DEVICE_MAX_MESSAGES_PER_SECOND = env_int("HUB_DEVICE_MAX_MESSAGES_PER_SECOND", 100, minimum=1)
DEVICE_MAX_BYTES_PER_SECOND = env_int("HUB_DEVICE_MAX_BYTES_PER_SECOND", 262144, minimum=1)

# Dashboards and commands.
WS_MAX_PENDING_FRAMES = env_int("HUB_WS_MAX_PENDING_FRAMES", 500, minimum=1)
WS_MAX_CONNECTING = env_int("HUB_WS_MAX_CONNECTING", 32, minimum=1)
# What one dashboard socket may send (telemetry.inbound); a frame is at most 64 KiB.
WS_MAX_FRAMES_PER_SECOND = env_int("HUB_WS_MAX_FRAMES_PER_SECOND", 10, minimum=1)
WS_MAX_BYTES_PER_SECOND = env_int("HUB_WS_MAX_BYTES_PER_SECOND", 65536, minimum=1)
WS_BURST_SECONDS = env_int("HUB_WS_BURST_SECONDS", 5, minimum=1)
COMMAND_DEFAULT_TTL = env_int("HUB_COMMAND_DEFAULT_TTL", 60, minimum=1)
COMMAND_MAX_TTL = env_int("HUB_COMMAND_MAX_TTL", 86400, minimum=1)
# Seconds a sent command waits for its device's answer before it ends `expired`.
COMMAND_DEFAULT_TIMEOUT = env_int("HUB_COMMAND_DEFAULT_TIMEOUT", 60, minimum=1)
COMMAND_MAX_TIMEOUT = env_int("HUB_COMMAND_MAX_TIMEOUT", 3600, minimum=1)
API_MAX_POINTS = env_int("HUB_API_MAX_POINTS", 5000, minimum=10)

# Alarm notifications (alarms/notify*.py, alarms/transports.py; README, "Alarm notifications").
# Email goes out through Django's SMTP backend with these.
EMAIL_HOST = env_str("HUB_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("HUB_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("HUB_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("HUB_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("HUB_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("HUB_EMAIL_FROM", "telehub@localhost")
# Seconds each network step of one delivery (connect, send, each read) may take.
EMAIL_TIMEOUT = NOTIFY_TIMEOUT = env_int("HUB_NOTIFY_TIMEOUT", 10, minimum=1)
# Deliveries under way at once; a slow receiver holds one of them.
NOTIFY_CONCURRENCY = env_int("HUB_NOTIFY_CONCURRENCY", 4, minimum=1)
# A failed delivery is tried again after this, doubling up to ten minutes; it is given up
# (failed) once a try fails this long after it was first due.
NOTIFY_RETRY_SECONDS = env_int("HUB_NOTIFY_RETRY_SECONDS", 10, minimum=1)
NOTIFY_GIVE_UP_SECONDS = env_int("HUB_NOTIFY_GIVE_UP_SECONDS", 3600, minimum=1)
# At most one message per destination per this many seconds: changes in between wait and go
# together as one digest.
NOTIFY_DIGEST_SECONDS = env_int("HUB_NOTIFY_DIGEST_SECONDS", 60, minimum=1)
# Days sent and failed notifications, with their delivery log, are kept.
NOTIFY_KEEP_DAYS = env_int("HUB_NOTIFY_KEEP_DAYS", 30, minimum=1)
# Webhooks to loopback, private, link-local and other non-public addresses: refused unless true
# (a hub whose receivers sit on its own network).
WEBHOOK_ALLOW_PRIVATE = env_bool("HUB_WEBHOOK_ALLOW_PRIVATE", False)

# Days each resolution of history is kept (0: forever); a device may override each (telemetry.retention).
RETAIN_RAW_DAYS = env_int("HUB_RETAIN_RAW_DAYS", 30, minimum=0)
RETAIN_MINUTE_DAYS = env_int("HUB_RETAIN_MINUTE_DAYS", 400, minimum=0)
RETAIN_HOUR_DAYS = env_int("HUB_RETAIN_HOUR_DAYS", 0, minimum=0)
