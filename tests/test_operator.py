"""What an operator meets first, run as an operator runs it: the TLS broker started as root,
the broker address `adddevice` hands out, and a missing secret key."""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.live import Device
from tests.servers import MosquittoServer

ROOT = Path(__file__).resolve().parent.parent


def bare_environment(tmp_path, **env):
    """This environment without any HUB_* variable, its data in tmp_path, and these."""
    bare = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    return {**bare, "HUB_DATA_DIR": str(tmp_path), **env}


def test_without_a_secret_key_manage_py_says_why_with_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          env=bare_environment(tmp_path))
    assert done.returncode != 0
    assert "HUB_SECRET_KEY is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_secret_key_daphne_says_why_with_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "daphne", "-p", "0", "hub.asgi:application"], cwd=ROOT,
                          capture_output=True, text=True, env=bare_environment(tmp_path), timeout=60)
    assert done.returncode != 0
    assert "HUB_SECRET_KEY is not set" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("variable, value, message", [
    ("HUB_MQTT_PUBLIC_URL", "mqtts://device:secret@mqtt.example.com", "HUB_MQTT_PUBLIC_URL takes a broker address"),
    ("HUB_LOG_FORMAT", "xml", "HUB_LOG_FORMAT must be plain or json"),
    ("HUB_METRICS_ALLOWED_IPS", "10.0.0.0/8,prometheus", "HUB_METRICS_ALLOWED_IPS takes addresses and networks"),
    ("HUB_BRIDGE_METRICS_PORT", "70000", "HUB_BRIDGE_METRICS_PORT must be a port number"),
])
def test_a_bad_setting_stops_every_command_with_its_message(tmp_path, variable, value, message):
    env = bare_environment(tmp_path, HUB_SECRET_KEY="k", **{variable: value})
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr


def adddevice(settings, mqtt_url, public_url):
    """What `adddevice` prints with these broker settings: its broker line, and all of it."""
    settings.MQTT_URL, settings.MQTT_PUBLIC_URL = mqtt_url, public_url
    out = StringIO()
    call_command("adddevice", "boiler-1", "--owner", "owner", stdout=out)
    broker = next(line.split(None, 1)[1] for line in out.getvalue().splitlines() if line.strip().startswith("broker:"))
    return broker, out.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db
def test_adddevice_prints_the_address_devices_use(make_user, settings):
    make_user("owner")
    broker, _ = adddevice(settings, "mqtt://hub.bridge:bridge-secret@mosquitto:1883", "mqtts://mqtt.example.com:8883")
    assert broker == "mqtts://mqtt.example.com:8883"


@pytest.mark.postgres
@pytest.mark.django_db
def test_adddevice_without_a_public_address_prints_the_bridges_broker_without_its_login(make_user, settings):
    make_user("owner")
    broker, output = adddevice(settings, "mqtt://hub.bridge:bridge-secret@broker.internal:1884", "")
    assert broker.startswith("mqtt://broker.internal:1884 ") and "HUB_MQTT_PUBLIC_URL" in broker
    assert "bridge-secret" not in output and "hub.bridge" not in output


class BrokerOnItsOwnUser(MosquittoServer):
    """The project's broker as an operator starts it as root: Mosquitto drops to its own user
    (the tests' other brokers stay root), with its certificates made by make-certs.sh as root."""

    def __init__(self, tmpdir):
        super().__init__(tmpdir)
        self.tmpdir.chmod(0o755)
        (self.tmpdir / "data").mkdir()
        os.chown(self.tmpdir / "data", pwd.getpwnam("mosquitto").pw_uid, -1)

    def config(self):
        return super().config().replace("\nuser root\n", "\n")


def has_user(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0 or not has_user("mosquitto"), reason="needs root and a mosquitto user")
def test_the_tls_broker_started_as_root_reads_the_key_make_certs_wrote():
    broker = BrokerOnItsOwnUser(tempfile.mkdtemp(prefix="telehub-broker-"))
    broker.start()
    try:
        assert "user root" not in (broker.tmpdir / "mosquitto.conf").read_text()
        client = Device(f"mqtts://localhost:{broker.tls_port}", "anyone", None, ca_file=str(broker.certs_dir / "ca.crt"))
        # Refused for want of a login, over TLS: the listener loaded its key and shook hands.
        assert client.refusal().getName() == "Not authorized", broker.log()
    finally:
        broker.stop()
        shutil.rmtree(broker.tmpdir)
