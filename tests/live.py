"""The hub's own processes, started as an operator starts them, and clients that use them as
people and devices do: a signed-in browser session, dashboard websockets, MQTT devices."""
import http.cookiejar
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import closing, suppress
from pathlib import Path

import orjson
import psutil
import psycopg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.sync.client import connect as websocket_connect
from websockets.uri import parse_uri

from bridge.mqtt import parse_mqtt_url
from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10
# A process's start: Django's start-up alone took over 10 s with the machine's two cores at a
# load of 15 (other test runs beside this one).
STARTUP_TIMEOUT = 30


def unique_id(prefix):
    """A device id no earlier test used: the broker keeps retained statuses across tests."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def database_url(database):
    """HUB_DATABASE_URL for the hub's processes, from Django's settings of a database."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


def execute_sql(database, sql, params=()):
    """Runs one statement (%s placeholders) and commits, on a connection of its own outside
    Django (and its test-time blockers); returns the rows it fetched."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        with closing(sqlite3.connect(database["NAME"], timeout=TIMEOUT)) as connection, connection:
            return connection.execute(sql.replace("%s", "?"), params).fetchall()
    with psycopg.connect(database_url(database)) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def wait_until(condition, timeout=TIMEOUT, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def stop_client(client):
    """Disconnects a paho client and ends its network thread. disconnect() ends the thread by
    itself, and the thread clears client._thread as it ends, so paho's loop_stop() (2.2) can find
    the thread set and then join None (AttributeError): the thread has ended either way."""
    client.disconnect()
    try:
        client.loop_stop()
    except AttributeError:
        pass


class HubProcess:
    """One of the hub's processes, with its output in a log file."""

    def __init__(self, name, args, env, log_path):
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process = None

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def stop(self, signum=signal.SIGTERM, timeout=30):
        """Signals the process and waits for it to end, as long as docker-compose.yml's
        stop_grace_period gives the bridge before a kill."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signum)
        self.wait_for_exit(timeout, f"signal {signum}")

    def wait_for_exit(self, timeout, after="its signal"):
        """Waits for the process to end; returns its exit status. One that is still running after
        `timeout` s is asked for every thread's stack (manage.py's SIGUSR1), and so are its
        children (`runbridge --processes` children log to the same file); then it is killed, and
        the test fails with the end of its log."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            start = len(self.log())
            parent = psutil.Process(self.process.pid)
            family = [parent, *parent.children(recursive=True)]
            self._signal_all(family, signal.SIGUSR1)
            deadline = time.monotonic() + 3
            while self.log()[start:].count("Current thread") < len(family) and time.monotonic() < deadline:
                time.sleep(0.1)
            self._signal_all(family, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout} s of {after}:\n{self.log()[-12000:]}")

    @staticmethod
    def _signal_all(processes, signum):
        for process in processes:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern, timeout=TIMEOUT, start=0):
        """Waits for a log line matching `pattern` after offset `start`; returns the match."""

        def found():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            return re.search(pattern, self.log()[start:])

        try:
            return wait_until(found, timeout, message=f"{pattern!r} in the {self.name} log")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- {self.name} log ---\n{self.log()[-3000:]}") from None


class ApiResponse:
    def __init__(self, status, body, headers=None):
        self.status = status
        self.body = body
        self.headers = headers

    def json(self):
        return orjson.loads(self.body)


class HubClient:
    """What a signed-in browser does with a hub at `url`."""

    def __init__(self, url):
        self.url = url

    def ws_url(self, path):
        return self.url.replace("http", "ws", 1) + path

    def sign_in(self, username, password):
        """Fills in the sign-in page as a browser does; returns the answer (an ApiResponse with its
        headers) and the browser's cookies."""
        cookies = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
        login_url = self.url + "accounts/login/"
        page = opener.open(login_url, timeout=TIMEOUT).read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf})
        request = urllib.request.Request(login_url, data=form.encode(), headers={"Referer": login_url})
        try:
            response = opener.open(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as error:
            response = error
        return ApiResponse(response.status, response.read(), response.headers), cookies

    def login(self, username, password):
        """Signs in through the login page as a browser does; returns the Cookie header."""
        _, cookies = self.sign_in(username, password)
        if not any(cookie.name == "sessionid" for cookie in cookies):
            raise AssertionError(f"signing in as {username} failed")
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in cookies)

    def api(self, method, path, cookie, body=None, headers=None):
        """An API call as a signed-in page makes it: the session cookie and its CSRF token
        (`cookie` None: as a page whose visitor has not signed in), and any other `headers`.
        `body`: what orjson encodes, or bytes sent as they are."""
        headers = {"Referer": self.url, "Content-Type": "application/json", **(headers or {})}
        if cookie is not None:
            headers.update({"Cookie": cookie, "X-CSRFToken": re.search(r"csrftoken=([^;]+)", cookie).group(1)})
        request = urllib.request.Request(
            self.url + path, method=method, headers=headers,
            data=body if body is None or isinstance(body, bytes) else orjson.dumps(body),
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return ApiResponse(response.status, response.read())
        except urllib.error.HTTPError as error:
            return ApiResponse(error.code, error.read())

    def dashboard(self, path, cookie=None, origin=None):
        headers = {"Cookie": cookie} if cookie else {}
        socket = websocket_connect(
            self.ws_url(path), additional_headers=headers, origin=origin or self.url.rstrip("/"), open_timeout=TIMEOUT
        )
        return Dashboard(socket)

    def stalled_dashboard(self, path, cookie):
        return StalledDashboard(self.ws_url(path), cookie, origin=self.url.rstrip("/"))


def daphne_command(port, *options, host="127.0.0.1"):
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), *options, "hub.asgi:application"]


def hub_environment(database, redis_url, broker, workdir, **settings):
    """The environment of the hub's processes on these servers, with these HUB_* settings."""
    return {
        **os.environ,
        "HUB_SECRET_KEY": "test-secret-key-not-for-production",
        "HUB_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HUB_DATABASE_URL": database_url(database),
        "HUB_REDIS_URL": redis_url,
        "HUB_BROKER_AUTH_DIR": str(broker.auth_dir),
        "HUB_BRIDGE_STATS_INTERVAL": "1",
        # Many test bridges run at once: metrics only where a test asks, on a port of its own.
        "HUB_BRIDGE_METRICS_PORT": "0",
        "HUB_DATA_DIR": str(workdir),
        "PYTHONUNBUFFERED": "1",
        **{f"HUB_{name.upper()}": str(value) for name, value in settings.items()},
    }


class LiveHub(HubClient):
    """The bridge (manage.py runbridge) and the web server (daphne), as in production."""

    def __init__(self, database, redis_url, broker, workdir, **settings):
        """`database`: Django's settings of the test database, SQLite or PostgreSQL."""
        self.mqtt_url = broker.url
        self.broker = broker
        self.workdir = workdir
        self.database = database
        # Each hub its own bridge login and id: the broker keeps a persistent session per login
        # (the bridge's own account is `<login>.<bridge id>`), the database a lease per id.
        self.bridge_login = (unique_id("bridge.test"), uuid.uuid4().hex)
        self.bridge_id = unique_id("test")
        # Each hub its own shared group too: a broker that several tests' hubs share keeps the
        # sessions of stopped ones, and a group shared with them would route readings there.
        self.shared_group = unique_id("hub")
        self.other_bridges = []  # started by another_bridge(), stopped with the hub
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}/")
        env = hub_environment(database, redis_url, broker, workdir, mqtt_url=broker.login_url(*self.bridge_login),
                              **{"bridge_id": self.bridge_id, "mqtt_shared_group": self.shared_group, **settings})
        self.bridge = HubProcess("bridge", [sys.executable, "manage.py", "runbridge"], env, workdir / "bridge.log")
        self.web = HubProcess("daphne", daphne_command(self.port), env, workdir / "daphne.log")

    def start(self):
        """Starts both; if either does not come up, stops both (no process outlives the test)."""
        self.web.start()
        try:
            self.start_bridge()
            wait_for_port("127.0.0.1", self.port, STARTUP_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def start_bridge(self):
        start = len(self.bridge.log())
        self.bridge.start()
        self.bridge.wait_for_log(r"connected to mqtt://", timeout=STARTUP_TIMEOUT, start=start)

    def stop(self):
        for bridge in [self.bridge, *self.other_bridges]:
            bridge.stop()
        self.web.stop()
        self._forget_bridge_logins()

    def another_bridge(self, name):
        """Another bridge of this hub, with its own HUB_BRIDGE_ID, from which it derives its
        client id, broker account (so its own session: the broker takes the username as client
        id) and lease; returns the process, started. The hub's stop() stops it too."""
        process = HubProcess(name, self.bridge.args, {**self.bridge.env, "HUB_BRIDGE_ID": unique_id(name)},
                             self.workdir / f"{name}.log")
        self.other_bridges.append(process)
        process.start()
        process.wait_for_log(r"connected to mqtt://", timeout=STARTUP_TIMEOUT)
        return process

    def another_web(self, name, *options, **env):
        """Another daphne of this hub, with these daphne options and environment variables;
        returns the process, started (stop it), and its URL."""
        port = free_port()
        web = HubProcess(name, daphne_command(port, *options), {**self.web.env, **env}, self.workdir / f"{name}.log")
        web.start()
        wait_for_port("127.0.0.1", port, TIMEOUT)
        return web, f"http://127.0.0.1:{port}/"

    def _forget_bridge_logins(self):
        forget_bridge_logins(self.database, [self.bridge_login[0]])


def forget_bridge_logins(database, logins):
    """The bridges keep their accounts (`<login>.<bridge id>`) in the registry and write them back
    whenever the registry changes (bridge.broker_auth_sync), so also after a test emptied the
    tables while the hub ran on: once they have stopped, remove them, and their leases (which
    would lapse, and a later hub's bridge would try to drain their sessions), so that later tests
    find only their own."""
    from bridge.models import BridgeLease
    from devices.models import BrokerAccount

    for login in logins:
        execute_sql(database, f"DELETE FROM {BrokerAccount._meta.db_table} WHERE username = %s OR username LIKE %s",
                    [login, f"{login}.%"])
        execute_sql(database, f"DELETE FROM {BridgeLease._meta.db_table} WHERE username = %s OR username LIKE %s",
                    [login, f"{login}.%"])


class Dashboard:
    """A dashboard's websocket: waits for the frames it expects, keeps what it skipped."""

    def __init__(self, socket):
        self.socket = socket
        self.seen = []
        self.unread = []  # frames of a batch not looked at yet

    def send(self, **frame):
        self.socket.send(orjson.dumps(frame).decode())

    def frame(self, timeout=TIMEOUT, **match):
        """The next frame whose fields equal `match`, batches unpacked; other frames are kept in `seen`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no frame matching {match} within {timeout} s; saw {self.seen[-10:]}")
            if not self.unread:
                try:
                    message = orjson.loads(self.socket.recv(timeout=remaining))
                except TimeoutError:
                    continue
                self.unread = message["frames"] if message["type"] == "batch" else [message]
            frame = self.unread.pop(0)
            self.seen.append(frame)
            if all(frame.get(key) == value for key, value in match.items()):
                return frame

    def no_frame(self, within, **match):
        """Fails if a frame matching `match` arrives within `within` seconds."""
        try:
            frame = self.frame(timeout=within, **match)
        except AssertionError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    def close(self):
        self.socket.close()


class StalledDashboard:
    """A dashboard's websocket over a plain socket, read only when asked: between reads the
    client takes nothing off its socket, as a frozen browser tab does (websockets' own
    clients read in a thread of their own)."""

    def __init__(self, url, cookie, origin, receive_buffer=65536):
        uri = parse_uri(url)
        self.protocol = ClientProtocol(uri, origin=origin, max_size=None)
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.connect((uri.host, uri.port))
        request = self.protocol.connect()
        request.headers["Cookie"] = cookie
        self.protocol.send_request(request)
        self._flush()
        self._pending = []
        while self.protocol.handshake_exc is None and self.protocol.state is not State.OPEN:
            self._read(TIMEOUT)
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc

    def frames(self, timeout=TIMEOUT):
        """Reads the socket again; yields each frame sent, batches unpacked, until `timeout`
        seconds pass with nothing new."""
        while True:
            while self._pending:
                yield self._pending.pop(0)
            if not self._read(timeout):
                return

    def _read(self, timeout):
        self.socket.settimeout(timeout)
        try:
            data = self.socket.recv(1 << 20)
        except TimeoutError:
            return False
        self.protocol.receive_data(data) if data else self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                message = orjson.loads(event.data)
                self._pending += message["frames"] if message["type"] == "batch" else [message]
        self._flush()  # pongs
        return bool(data)

    def _flush(self):
        for data in self.protocol.data_to_send():
            self.socket.sendall(data)

    def close(self):
        self.socket.close()


class Gateway:
    """A login of the hub's gateway role: publishes on any device's topics."""

    def __init__(self, mqtt_url, username, password):
        self.address = parse_mqtt_url(mqtt_url)
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = lambda client, userdata, flags, reason_code, properties: (
            reason_code.is_failure or self.connected.set()
        )

    def connect(self):
        self.client.connect(self.address.host, self.address.port)
        self.client.loop_start()
        if not self.connected.wait(TIMEOUT):
            raise AssertionError(f"the gateway could not connect to {self.address}")
        return self

    def publish(self, topic, payload):
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)

    def disconnect(self):
        stop_client(self.client)


class Device:
    """An MQTT device as docs/protocol.md describes it, on paho's own network thread."""

    def __init__(self, mqtt_url, device_id, password, clean_session=True, ca_file=None, client_id=None):
        """`password` None: an anonymous client. `client_id`: to try another's (the broker should ignore it)."""
        self.device_id = device_id
        self.address = parse_mqtt_url(mqtt_url)
        self.commands = queue.Queue()
        self.connected = threading.Event()
        self.refused = None  # the broker's reason code for the last refused connection
        self.disconnects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or device_id, clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        if password is not None:
            self.client.username_pw_set(device_id, password)
        if self.address.tls:
            self.client.tls_set(ca_certs=ca_file)
        # The broker learns a new login within seconds: until then, try again soon.
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.will_set(self.topic("status"), b"offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda client, userdata, message: self.commands.put(orjson.loads(message.payload))

    def topic(self, kind):
        return f"devices/{self.device_id}/{kind}"

    def connect(self):
        self.client.connect(self.address.host, self.address.port)
        self.client.loop_start()
        if not self.connected.wait(TIMEOUT):
            raise AssertionError(f"{self.device_id} could not connect to {self.address} (refused: {self.refused})")
        return self

    def refusal(self):
        """Tries to connect, expecting to be refused; returns the broker's reason."""
        self.client.connect_async(self.address.host, self.address.port)
        self.client.loop_start()
        try:
            return wait_until(lambda: self.refused, message=f"the broker to refuse {self.device_id}")
        finally:
            stop_client(self.client)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = reason_code
            return
        client.subscribe(self.topic("commands"), qos=1)
        client.publish(self.topic("status"), b"online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set():
            self.disconnects += 1

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)

    def send_reading(self, values, ts=None, qos=1):
        document = values if ts is None else {"ts": ts, "values": values}
        self.publish(self.topic("telemetry"), orjson.dumps(document), qos)

    def next_command(self, timeout=TIMEOUT):
        try:
            return self.commands.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.device_id} received no command within {timeout} s") from None

    def no_command(self, within):
        """Fails if a command arrives within `within` seconds."""
        try:
            command = self.commands.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"{self.device_id} received an unexpected command {command}")

    def answer(self, command_id, ok=True, result=None, error=None):
        answer = {"id": command_id, "ok": ok, "result": result} if ok else {"id": command_id, "ok": False, "error": error}
        self.publish(self.topic("commands/result"), orjson.dumps(answer))

    def go_offline(self):
        """Leaves as a device does when it shuts down: says so, then disconnects."""
        self.publish(self.topic("status"), b"offline", retain=True)
        stop_client(self.client)
