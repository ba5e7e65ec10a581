"""Throwaway Redis, Mosquitto, PostgreSQL and Caddy servers for the tests, on free ports, in a
temporary directory.

Mosquitto runs as in production, with the project's own mosquitto/mosquitto.conf under
mosquitto/run-broker.sh, changing only what a throwaway broker must: its ports and the places of
its data, logins and certificates (made by mosquitto/make-certs.sh). Caddy, the TLS proxy, runs
the project's proxy/Caddyfile the same way."""
import glob
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BROKER_CONFIG = ROOT / "mosquitto" / "mosquitto.conf"
BROKER_SCRIPTS = ROOT / "mosquitto"
PROXY_CONFIG = ROOT / "proxy" / "Caddyfile"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_ports_in_a_row(count):
    """A port P with P to P + count - 1 all free now, for a process whose children listen on
    its port plus their number. The ports above a free one are often a connection's own end
    (the kernel hands those out from the same range), so each is tried."""
    while True:
        first = free_port()
        if all(_free(first + offset) for offset in range(1, count)):
            return first


def _free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(host, port, timeout):
    """Waits until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def find_program(name):
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(f"{name} is not installed: scripts/test installs it with apt-get")
    return found


class ServerProcess:
    """A server started on a free port; restartable on the same port, with the same data."""

    program = None
    user = None  # the user the server runs as: None for ours

    def __init__(self, tmpdir):
        self.tmpdir = Path(tmpdir)
        self.port = free_port()
        self.process = None
        self.log_path = self.tmpdir / f"{self.program}.log"

    def command(self):
        raise NotImplementedError

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.tmpdir, env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, user=self.user,
            )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=10)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.program} did not start:\n{self.log()}") from None

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self):
        """Kills the server and anything it started, as a crash would: no clean shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self):
        self.stop()
        self.start()

    def environment(self):
        return None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(ServerProcess):
    program = "redis-server"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self):
        return [
            find_program(self.program),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.tmpdir),
        ]


class RedisReplica(RedisServer):
    """A replica of `master`, which Sentinel promotes when the master goes."""

    def __init__(self, tmpdir, master):
        super().__init__(tmpdir)
        self.master = master

    def command(self):
        return [*super().command(), "--replicaof", "127.0.0.1", str(self.master.port)]


class RedisSentinel(ServerProcess):
    """One redis-sentinel watching `master` as MASTER_NAME, quorum 1, quick to call it down."""

    program = "redis-sentinel"
    MASTER_NAME = "telehub"

    def __init__(self, tmpdir, master):
        super().__init__(tmpdir)
        self.master = master

    def command(self):
        config = self.tmpdir / "sentinel.conf"  # Sentinel rewrites it as it learns
        if not config.exists():
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.tmpdir}\n"
                f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {self.MASTER_NAME} 10000\n"
            )
        return [find_program(self.program), str(config)]

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


class MosquittoServer(ServerProcess):
    program = "mosquitto"

    def __init__(self, tmpdir):
        super().__init__(tmpdir)
        self.tls_port = free_port()
        self.auth_dir = self.tmpdir / "auth"
        self.certs_dir = self.tmpdir / "certs"

    @property
    def url(self):
        """The broker's address, with no login: add one with login_url()."""
        return f"mqtt://127.0.0.1:{self.port}"

    def login_url(self, username, password, tls=False):
        if tls:
            return f"mqtts://{username}:{password}@localhost:{self.tls_port}"
        return f"mqtt://{username}:{password}@127.0.0.1:{self.port}"

    def command(self):
        if not (self.certs_dir / "server.crt").exists():
            subprocess.run(
                ["sh", str(BROKER_SCRIPTS / "make-certs.sh"), str(self.certs_dir), "localhost", "127.0.0.1"],
                check=True, capture_output=True,
            )
        config_path = self.tmpdir / "mosquitto.conf"
        config_path.write_text(self.config())
        return ["sh", str(BROKER_SCRIPTS / "run-broker.sh"), str(config_path)]

    def environment(self):
        return {**os.environ, "MOSQUITTO": find_program(self.program)}

    def config(self):
        """The project's broker config, with this server's ports and files."""
        data_dir = self.tmpdir / "data"
        data_dir.mkdir(exist_ok=True)
        replacements = {
            ("listener", "1883"): f"listener {self.port} 127.0.0.1",
            ("listener", "8883"): f"listener {self.tls_port} 127.0.0.1",
            ("certfile", None): f"certfile {self.certs_dir / 'server.crt'}",
            ("keyfile", None): f"keyfile {self.certs_dir / 'server.key'}",
            ("password_file", None): f"password_file {self.auth_dir / 'passwords'}",
            ("acl_file", None): f"acl_file {self.auth_dir / 'acl'}",
            ("persistence_location", None): f"persistence_location {data_dir}/",
        }
        lines = []
        for line in BROKER_CONFIG.read_text().splitlines():
            option, _, value = line.partition(" ")
            lines.append(replacements.get((option, value), replacements.get((option, None), line)))
        if os.geteuid() == 0:
            # As root Mosquitto switches to the "mosquitto" user, who cannot write our directory.
            lines.append("user root")
        return "\n".join(lines) + "\n"


class PostgresServer(ServerProcess):
    """A PostgreSQL cluster of its own (Debian's packages keep initdb and postgres off the PATH),
    with one superuser, telehub, trusted on 127.0.0.1, and an empty database of the same name
    (`url`). PostgreSQL refuses to run as root, so under root it runs as the postgres user, in a
    directory of its own under /tmp. fsync is off: a throwaway cluster need not survive a power
    cut."""

    program = "postgres"

    def __init__(self, tmpdir):
        super().__init__(tmpdir)
        if os.geteuid() == 0:
            self.user = "postgres"
            self.tmpdir = Path(tempfile.mkdtemp(prefix="telehub-postgres-"))
            shutil.chown(self.tmpdir, self.user)
        self.data_dir = self.tmpdir / "data"

    @property
    def url(self):
        return self.database_url("telehub")

    @staticmethod
    def program_path(name):
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(path.split("/")[4]))
        if not found:
            raise RuntimeError(f"{name} is not installed: scripts/test installs postgresql with apt-get")
        return found[-1]

    def command(self):
        if not self.data_dir.exists():
            subprocess.run(
                [self.program_path("initdb"), "-D", str(self.data_dir), "-U", "telehub", "-A", "trust", "--no-sync"],
                check=True, capture_output=True, cwd=self.tmpdir, user=self.user,
            )
        return [
            self.program_path(self.program), "-D", str(self.data_dir), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-k", str(self.tmpdir), "-c", "fsync=off",
        ]

    def start(self):
        super().start()
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(self.database_url("postgres"), autocommit=True) as connection:
                    if not connection.execute("SELECT 1 FROM pg_database WHERE datname = 'telehub'").fetchone():
                        connection.execute("CREATE DATABASE telehub")
                return
            except psycopg.OperationalError:  # listening, but still starting up
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def database_url(self, name):
        return f"postgres://telehub@127.0.0.1:{self.port}/{name}"

    def stop(self):
        """A fast shutdown (SIGINT): connections are closed, not waited for."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)

    def remove(self):
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class NameServer:
    """A DNS server on a free UDP port that answers every A query with `addresses`, as compose's
    does for a service with one address per replica; change `addresses` to scale."""

    def __init__(self, addresses):
        self.addresses = list(addresses)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.socket.close()

    def _serve(self):
        while True:
            try:
                query, client = self.socket.recvfrom(512)
            except OSError:  # closed
                return
            self.socket.sendto(self.answer(query), client)

    def answer(self, query):
        """The answer to one query (RFC 1035, 4.1): its id and question, then one A record per
        address when it asks for A (type 1); no record for any other type."""
        query_id, flags = struct.unpack("!HH", query[:4])
        end = 12
        while query[end]:  # the question's name: length-prefixed labels, then a zero
            end += query[end] + 1
        question = query[12:end + 5]  # with its type and class
        (query_type,) = struct.unpack("!H", question[-4:-2])
        addresses = self.addresses if query_type == 1 else []
        # Each record names the question's name by a pointer to offset 12; class IN, TTL 0.
        records = [struct.pack("!HHHIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton(address) for address in addresses]
        header = struct.pack("!HHHHHH", query_id, 0x8400 | (flags & 0x0100), 1, len(records), 0, 0)
        return header + question + b"".join(records)


class ProxyServer(ServerProcess):
    """Caddy with the project's proxy/Caddyfile, serving https://localhost:<port>/ with a
    certificate from its own local CA (`ca_file`), in front of the web processes listening on
    `web_port` at the addresses `name_server` gives for the name `web`."""

    program = "caddy"

    def __init__(self, tmpdir, name_server, web_port):
        super().__init__(tmpdir)
        self.name_server = name_server
        self.web_port = web_port

    @property
    def url(self):
        return f"https://localhost:{self.port}/"

    @property
    def ca_file(self):
        return self.tmpdir / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def command(self):
        config_path = self.tmpdir / "Caddyfile"
        config_path.write_text(self.config())
        return [find_program(self.program), "run", "--adapter", "caddyfile", "--config", str(config_path)]

    def environment(self):
        return {
            **os.environ, "WEB_DOMAIN": f"localhost:{self.port}",
            "XDG_DATA_HOME": str(self.tmpdir / "data"), "XDG_CONFIG_HOME": str(self.tmpdir / "config"),
        }

    def config(self):
        """The project's Caddyfile, with global options a throwaway proxy needs (no admin
        endpoint, no redirect server on port 80, a local CA that no trust store learns of), bound
        to loopback, asking this test's name server for the web processes on their port."""
        replacements = {
            "{$WEB_DOMAIN} {": "{$WEB_DOMAIN} {\n\tbind 127.0.0.1",
            "dynamic a web 8000 {": f"dynamic a web {self.web_port} {{\n\t\t\tresolvers udp/127.0.0.1:{self.name_server.port}",
        }
        config = PROXY_CONFIG.read_text()
        for line, replacement in replacements.items():
            if config.count(line) != 1:
                raise AssertionError(f"{PROXY_CONFIG} should hold {line!r} once")
            config = config.replace(line, replacement)
        return "{\n\tadmin off\n\tauto_https disable_redirects\n\tlocal_certs\n\tskip_install_trust\n}\n\n" + config

    def start(self):
        super().start()
        context = None
        deadline = time.monotonic() + 10
        while True:  # Caddy listens before its CA has issued the certificate
            try:
                context = context or ssl.create_default_context(cafile=self.ca_file)
                with context.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=1), server_hostname="localhost"):
                    return
            except OSError:  # refused, no CA file yet, or no certificate yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"caddy serves no certificate for localhost:\n{self.log()}") from None
                time.sleep(0.1)


class PostgresReplica(PostgresServer):
    """A hot standby of `primary`, cloned with pg_basebackup -R: it streams the primary's WAL
    and answers reads only. pg_wal_replay_pause() on it freezes what it shows."""

    def __init__(self, tmpdir, primary):
        super().__init__(tmpdir)
        self.primary = primary

    def command(self):
        if not self.data_dir.exists():
            subprocess.run(
                [self.program_path("pg_basebackup"), "-D", str(self.data_dir), "-R", "-X", "stream", "-c", "fast",
                 "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "telehub"],
                check=True, capture_output=True, cwd=self.tmpdir, user=self.user,
            )
        return super().command()
