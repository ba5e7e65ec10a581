"""The stack a benchmark runs against: throwaway Redis and Mosquitto, the hub's bridge and daphne
as separate processes, an SQLite database in a temporary directory or a throwaway PostgreSQL
cluster; and the CPU and memory of every process, sampled while it runs."""
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import psycopg

from tests.live import Gateway, HubProcess, unique_id
from tests.servers import MosquittoServer, PostgresServer, RedisServer, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent

# Load generator processes at most, each with its own gateway login.
MAX_GENERATORS = 4


class ResourceMeter:
    """Samples the CPU time and memory of named processes every half second: the hub's, and the
    load generators and dashboard clients of a scenario, so that its figures show what the load
    itself costs. A process of ours that exits is sampled once more as it exits (os.waitid
    without reaping), so its CPU to the end counts."""

    def __init__(self):
        self.processes = {}  # name -> psutil.Process
        self.trees = set()  # names metered with all their child processes
        self.cpu = {}  # name -> CPU seconds at the latest sample
        self.peak_rss = {}
        self.rss = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_forever, daemon=True)
        self._thread.start()

    def watch(self, name, pid, tree=False):
        """Meters a process; with tree, its child processes too, those gone included (a
        database server's connections: their memory is summed, so shared pages count twice)."""
        process = psutil.Process(pid)
        self.processes[name] = process
        if tree:
            self.trees.add(name)
        self.cpu[name] = 0.0
        self.peak_rss[name] = 0
        threading.Thread(target=self._sample_at_exit, args=(name, process), daemon=True).start()

    def forget(self, name):
        self.processes.pop(name, None)
        for figures in (self.cpu, self.rss, self.peak_rss):
            figures.pop(name, None)

    def start_interval(self):
        """Forgets the processes that have exited, restarts the peaks, and returns the CPU
        seconds so far (see cpu_seconds) to measure an interval from."""
        for name, process in list(self.processes.items()):
            try:
                exited = process.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                exited = True
            if exited:
                self.forget(name)
        self.reset_peaks()
        return self.cpu_seconds()

    def cpu_seconds(self):
        """CPU seconds of every process watched, those that exited included."""
        for name, process in list(self.processes.items()):
            self._sample_cpu(name, process)
        return {name: self.cpu[name] for name in self.processes}

    def reset_peaks(self):
        for name in self.processes:
            self.peak_rss[name] = self.rss.get(name, 0)

    def _sample_cpu(self, name, process):
        try:
            cpu = process.cpu_times()
        except psutil.NoSuchProcess:
            return
        seconds = cpu.user + cpu.system
        if name in self.trees:
            seconds += cpu.children_user + cpu.children_system
            for child in self._children(process):
                try:
                    seconds += sum(child.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    continue
        self.cpu[name] = seconds

    def _rss(self, name, process):
        rss = process.memory_info().rss
        if name in self.trees:
            for child in self._children(process):
                try:
                    rss += child.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
        return rss

    @staticmethod
    def _children(process):
        try:
            return process.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def _sample_at_exit(self, name, process):
        try:
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # not our child (the broker under its script), or reaped already
            return
        if self.processes.get(name) is process:
            self._sample_cpu(name, process)

    def _sample_forever(self):
        while not self._stop.wait(0.5):
            for name, process in list(self.processes.items()):
                self._sample_cpu(name, process)
                try:
                    rss = self._rss(name, process)
                except psutil.NoSuchProcess:
                    continue
                if rss:  # an exited process not yet reaped shows none
                    self.rss[name] = rss
                    self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)

    def stop(self):
        self._stop.set()


class Stack:
    def __init__(self, workdir, devices, channel_layer="pubsub", batch_window_ms=None, database="sqlite", log=print,
                 settings=None):
        """`settings`: more HUB_* settings for the hub's processes."""
        self.workdir = Path(workdir)
        self.devices = devices
        self.log = log
        self.redis = RedisServer(tmpdir=self._dir("redis"))
        self.mosquitto = MosquittoServer(tmpdir=self._dir("mosquitto"))
        self.postgres = PostgresServer(tmpdir=self._dir("postgres")) if database == "postgres" else None
        self.database = self.workdir / "bench.sqlite3"
        self.database_url = self.postgres.url if self.postgres else f"sqlite:///{self.database}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.meter = ResourceMeter()
        self.bridge_client_id = unique_id("bench-bridge")
        self.bridge_metrics_port = free_port()
        # Broker logins: the hub's bridge, the raw and naive subscribers (bridge role, each its own
        # session), and the load generators (gateway role: each publishes for many devices).
        self.accounts = {
            name: (username, role, uuid.uuid4().hex)
            for name, username, role in [
                ("bridge", "bench.bridge", "bridge"), ("raw", "bench.raw", "bridge"), ("naive", "bench.naive", "bridge"),
                *((f"load-{n}", f"bench.load-{n}", "gateway") for n in range(MAX_GENERATORS)),
            ]
        }
        self.env = {
            **os.environ,
            "HUB_SECRET_KEY": "bench-secret-key-not-for-production",
            # As in production, whatever the caller's shell says (the README's quick start exports
            # HUB_DEBUG=true): in debug mode Django keeps every statement it runs, and on SQLite
            # quotes their parameters with a query of its own.
            "HUB_DEBUG": "false",
            "HUB_DATABASE_URL": self.database_url,
            "HUB_REDIS_URL": self.redis.url,
            "HUB_CHANNEL_LAYER": channel_layer,
            "HUB_MQTT_URL": self.login_url("bridge"),
            "HUB_BROKER_AUTH_DIR": str(self.mosquitto.auth_dir),
            "HUB_BRIDGE_ID": "bench-0",
            "HUB_BRIDGE_STATS_INTERVAL": "5",
            "HUB_BRIDGE_METRICS_PORT": str(self.bridge_metrics_port),
            "HUB_DATA_DIR": str(self.workdir),
            "HUB_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        if batch_window_ms is not None:
            self.env["HUB_BATCH_WINDOW_MS"] = str(batch_window_ms)
        self.env.update(settings or {})
        self.bridge = HubProcess("bridge", [sys.executable, "manage.py", "runbridge"], self.env, self.workdir / "bridge.log")
        self.bridges = [self.bridge]  # more with add_bridges(), each with a metrics port of its own
        self._stored = {}  # (bridge name, pid): its last readings_stored_total (stored_values())
        self.bridge_metrics_ports = {self.bridge: self.bridge_metrics_port}
        self.web = HubProcess(
            "daphne",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "hub.asgi:application"],
            self.env,
            self.workdir / "daphne.log",
        )
        self.webs = [self.web]  # more with add_web()
        # The naive bridge's dashboards: their own daphne on the core layer, their own database
        # (a copy of the hub's, made before any reading is stored).
        self.naive_database = self.workdir / "naive.sqlite3"
        self.naive_port = free_port()
        naive_url = self.postgres.database_url("naive") if self.postgres else f"sqlite:///{self.naive_database}"
        self.naive_env = {**self.env, "HUB_DATABASE_URL": naive_url, "HUB_CHANNEL_LAYER": "core"}
        self.naive_web = HubProcess(
            "naive-daphne",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.naive_port), "bench.naive_asgi:application"],
            self.naive_env,
            self.workdir / "naive-daphne.log",
        )
        self.cookie = None
        self._reader = None  # on PostgreSQL, the connection the suite counts stored readings on

    def login_url(self, name):
        """The broker's URL with the login of one of the bench's accounts."""
        username, _, password = self.accounts[name]
        return self.mosquitto.login_url(username, password)

    def _dir(self, name):
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self):
        self.redis.start()
        self.mosquitto.start()
        self.meter.watch("redis", self.redis.process.pid)
        # The broker runs under mosquitto/run-broker.sh: meter the broker, not the script.
        script = psutil.Process(self.mosquitto.process.pid)
        self.meter.watch("mosquitto", next(child.pid for child in script.children() if child.name() == "mosquitto"))
        if self.postgres:
            self.postgres.start()
            self.meter.watch("postgres", self.postgres.process.pid, tree=True)
        self.log(f"stack: redis {self.redis.url}, mosquitto {self.mosquitto.url}, database {self.database_url}")
        self.run_python("manage.py", "migrate", "--verbosity", "0")
        accounts = [arg for username, role, password in self.accounts.values() for arg in ("--account", username, role, password)]
        prepared = self.run_python("-m", "bench.prepare", "--devices", str(self.devices), *accounts)
        self.cookie = json.loads(prepared.splitlines()[-1])["cookie"]
        self._copy_database_for_naive()
        if self.postgres:
            # One connection, kept (opened after the copy, which wants the database idle): a new
            # one per count costs the server ~5 ms of CPU, metered as the hub's.
            self._reader = psycopg.connect(self.postgres.url, autocommit=True)
        self.web.start()
        wait_for_port("127.0.0.1", self.port, 30)
        self.meter.watch("daphne", self.web.process.pid)
        self.start_bridge()
        self.log(f"stack: daphne on {self.url}, bridge connected, {self.devices} devices registered")

    def start_bridge(self):
        """Starts every bridge and waits for each one's heartbeat (they log at WARNING here, to
        keep the measurement honest)."""
        heartbeats = {bridge: Path(bridge.env.get("HUB_BRIDGE_HEARTBEAT_FILE", self.workdir / "bridge.heartbeat"))
                      for bridge in self.bridges}
        for bridge, heartbeat in heartbeats.items():
            heartbeat.unlink(missing_ok=True)
            bridge.start()
        deadline = time.monotonic() + 30
        for bridge, heartbeat in heartbeats.items():
            while not heartbeat.exists():
                if bridge.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{bridge.name} did not connect:\n{bridge.log()[-2000:]}")
                time.sleep(0.05)
            self.meter.watch(bridge.name, bridge.process.pid)

    def stop_bridge(self):
        for bridge in self.bridges:
            self.meter.forget(bridge.name)
            bridge.stop()

    def add_bridges(self, count):
        """`count` more bridges beside the first, in its shared subscription group, each with an
        id, heartbeat and metrics port of its own; started with start_bridge()."""
        for number in range(len(self.bridges), len(self.bridges) + count):
            name = f"bridge-{number}"
            port = free_port()
            # Its own id: from it the bridge derives its broker account (so its own session: the
            # broker takes a client's username as its client id) and its lease.
            env = {**self.env, "HUB_BRIDGE_ID": f"bench-{number}",
                   "HUB_BRIDGE_METRICS_PORT": str(port), "HUB_BRIDGE_HEARTBEAT_FILE": str(self.workdir / f"{name}.heartbeat")}
            bridge = HubProcess(name, [sys.executable, "manage.py", "runbridge"], env, self.workdir / f"{name}.log")
            self.bridges.append(bridge)
            self.bridge_metrics_ports[bridge] = port

    def add_web(self):
        """Another daphne on the same Redis and database; returns its URL."""
        port = free_port()
        name = f"daphne-{len(self.webs)}"
        web = HubProcess(name, [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "hub.asgi:application"],
                         self.env, self.workdir / f"{name}.log")
        web.start()
        wait_for_port("127.0.0.1", port, 30)
        self.meter.watch(name, web.process.pid)
        self.webs.append(web)
        return f"http://127.0.0.1:{port}"

    def bridge_metrics(self, bridge=None):
        """A bridge's own figures and its upkeep's (the first's by default), as {metric name:
        value}, unlabelled metrics only."""
        url = f"http://127.0.0.1:{self.bridge_metrics_ports[bridge or self.bridge]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        return {name: float(value) for name, _, value in (line.partition(" ") for line in lines)
                if name.startswith(("telehub_bridge_", "telehub_rollup_")) and "{" not in name}

    def wait_drained(self, quiet=1.0, timeout=600):
        """Waits until the running bridges hold nothing and have received nothing for `quiet`
        seconds (the broker has nothing queued for them), so a scenario's backlog cannot spill
        into the next one's figures. Returns the seconds it took."""
        started = time.monotonic()
        received, since = None, started
        while True:
            running = [bridge for bridge in self.bridges if bridge.process and bridge.process.poll() is None]
            figures = [self.bridge_metrics(bridge) for bridge in running]
            now = time.monotonic()
            total = sum(figure["telehub_bridge_messages_received_total"] for figure in figures)
            if total != received or any(figure["telehub_bridge_readings_held"] for figure in figures):
                received, since = total, now
            elif now - since >= quiet:
                return round(since - started, 1)
            if now - started > timeout:
                raise RuntimeError(f"the bridge did not drain in {timeout} s: {figures}")
            time.sleep(0.1)

    def wait_rolled_up(self, timeout=120):
        """Waits until the first bridge's rollup job has no marked minute left (the current
        minute's marks wait for it to end), so that the job does not recompute a scenario's
        minutes while the next one is measured. Returns the seconds it took."""
        started = time.monotonic()
        while self.bridge_metrics()["telehub_rollup_marked"]:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the rollup job still had minutes marked after {timeout} s")
            time.sleep(0.5)
        return round(time.monotonic() - started, 1)

    def _copy_database_for_naive(self):
        """The naive bridge's database: the hub's registry, its devices, accounts and session,
        copied while nothing is connected to it (PostgreSQL copies only an idle template)."""
        if self.postgres:
            with psycopg.connect(self.postgres.database_url("postgres"), autocommit=True) as connection:
                connection.execute("CREATE DATABASE naive TEMPLATE telehub")
        else:
            with sqlite3.connect(self.database) as source, sqlite3.connect(self.naive_database) as copy:
                source.backup(copy)

    def start_naive(self):
        """The naive bridge's dashboards' daphne, on its copy of the registry."""
        self.naive_web.start()
        wait_for_port("127.0.0.1", self.naive_port, 30)
        self.meter.watch("naive-daphne", self.naive_web.process.pid)

    def stop_naive(self):
        self.meter.forget("naive-daphne")
        self.naive_web.stop()

    def end_session(self, name):
        """Discards the broker's persistent session of one of the bench's logins, by connecting as
        it with a clean session (the broker takes the username for the client id): its
        subscription and what is queued for it go, and the broker stops keeping a copy of every
        later reading for a subscriber that is gone."""
        username, _, password = self.accounts[name]
        Gateway(self.mosquitto.url, username, password).connect().disconnect()

    def run_python(self, *args):
        result = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=600
        )
        if result.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def spawn(self, *args, env=None, name=None):
        """Starts a Python helper (load generator, clients) in the hub's environment, or `env`;
        metered under `name` if given."""
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        if name:
            self.meter.watch(name, process.pid)
        return process

    def stored_values(self):
        """Reading values the bridges say they stored since the stack started, from their metrics:
        cheap however large the database (counted_rows() reads the whole table). A bridge's count
        starts again with each of its processes, so the last one seen of each is kept."""
        for bridge in self.bridges:
            if bridge.process and bridge.process.poll() is None:
                try:
                    figures = self.bridge_metrics(bridge)
                except OSError:  # not serving yet, or stopping
                    continue
                self._stored[bridge.name, bridge.process.pid] = figures["telehub_bridge_readings_stored_total"]
        return int(sum(self._stored.values()))

    def counted_rows(self):
        """Stored reading values, counted (readings have no id to take the highest of: a scan
        of the table, whose cost grows with it)."""
        return self._query_one("SELECT COUNT(*) FROM telemetry_reading")[0]

    def newest_publish_time(self):
        """The publish time carried by the newest stored reading, if any: the latest values
        hold each device's newest."""
        row = self._query_one("SELECT MAX(num) FROM telemetry_latestvalue WHERE key = 'pub'")
        return row[0] if row else None

    def new_alarms(self, after_id):
        """(id, device id, rule name) of the alarms raised after alarm `after_id`, oldest first."""
        return self._query_all(
            "SELECT a.id, a.device_id, r.name FROM alarms_alarm a JOIN alarms_alarmrule r ON r.id = a.rule_id "
            f"WHERE a.id > {int(after_id)} ORDER BY a.id"
        )

    def devices_whose_latest_is(self, value):
        """Ids of the devices one of whose keys' newest stored value is `value`, from the latest
        values: a row per key of a device, however long the history."""
        rows = self._query_all(f"SELECT DISTINCT device_id FROM telemetry_latestvalue WHERE num = {float(value)}")
        return [device_id for (device_id,) in rows]

    def _query_one(self, sql):
        """One row of a read on the hub's database (None if none), from a connection of its own."""
        rows = self._query_all(sql)
        return rows[0] if rows else None

    def _query_all(self, sql):
        if self._reader is not None:
            return self._reader.execute(sql).fetchall()  # psycopg lets threads share it
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(sql).fetchall()

    def stop(self):
        self.meter.stop()
        for process in (*self.bridges, *self.webs, self.naive_web):
            try:
                process.stop()
            except AssertionError as error:
                self.log(f"stack: {error}")
        self.mosquitto.stop()
        self.redis.stop()
        if self._reader is not None:
            self._reader.close()
        if self.postgres:
            self.postgres.remove()
