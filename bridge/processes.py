"""`runbridge --processes N`: N bridges from one command, to use every core.

One bridge process stores on one core (paho's thread and the event loop share the GIL). N
children run `runbridge` each, in the shared subscription group, each a bridge of its own:
HUB_BRIDGE_ID `<this bridge's id>-<n>` (its client id, broker account and lease), its own
heartbeat file and metrics port. The parent starts them, starts again (after a pause that
doubles up to a minute) any that exits, touches its own heartbeat while every child's is fresh,
and on SIGTERM or SIGINT passes the signal on and waits for them to store what they hold.
"""
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings

logger = logging.getLogger("bridge")

CHECK_SECONDS = 1.0
MAX_RESTART_DELAY = 60.0
# A child that ran this long before exiting was healthy: its next restart waits the least.
STEADY_SECONDS = 60.0


class Child:
    """One `runbridge` child, started again when it exits."""

    def __init__(self, number, env):
        self.number = number
        self.env = env
        self.heartbeat = Path(env["HUB_BRIDGE_HEARTBEAT_FILE"])
        self.process = None
        self.started_at = 0.0
        self.restart_delay = 1.0
        self.restart_at = 0.0

    @property
    def name(self):
        return self.env["HUB_BRIDGE_ID"]

    def start(self):
        self.process = subprocess.Popen([sys.executable, *self.command()], env=self.env)
        self.started_at = time.monotonic()
        logger.info("bridge process %s started (pid %d)", self.name, self.process.pid)

    @staticmethod
    def command():
        return [str(Path(settings.BASE_DIR) / "manage.py"), "runbridge"]

    def check(self, now):
        """Notices an exit and schedules the restart; restarts once its pause is over."""
        if self.process is not None and self.process.poll() is not None:
            ran = now - self.started_at
            self.restart_delay = 1.0 if ran > STEADY_SECONDS else min(self.restart_delay * 2, MAX_RESTART_DELAY)
            logger.error("bridge process %s exited with %s after %.0f s; starting it again in %.0f s",
                         self.name, self.process.returncode, ran, self.restart_delay)
            self.process, self.restart_at = None, now + self.restart_delay
        if self.process is None and now >= self.restart_at:
            self.start()

    def fresh(self, max_age):
        try:
            return time.time() - self.heartbeat.stat().st_mtime <= max_age
        except FileNotFoundError:
            return False


def child_environments(count):
    """The environment of each of `count` children."""
    base = dict(os.environ)
    base.pop("HUB_MQTT_CLIENT_ID", None)  # each child derives its own from its HUB_BRIDGE_ID
    heartbeat = settings.BRIDGE_HEARTBEAT_FILE
    environments = []
    for number in range(1, count + 1):
        env = {
            **base,
            "HUB_BRIDGE_ID": f"{settings.BRIDGE_ID}-{number}",
            "HUB_BRIDGE_HEARTBEAT_FILE": str(heartbeat.with_name(f"{heartbeat.name}.{number}")),
        }
        if settings.BRIDGE_METRICS_PORT:
            env["HUB_BRIDGE_METRICS_PORT"] = str(settings.BRIDGE_METRICS_PORT + number)
        environments.append(env)
    return environments


def run(count, stale_seconds):
    """Runs `count` bridge processes until SIGTERM or SIGINT, then stops them."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    children = [Child(number, env) for number, env in enumerate(child_environments(count), start=1)]
    logger.info("running %d bridge processes in shared group %r: %s", count, settings.MQTT_SHARED_GROUP,
                ", ".join(child.name for child in children))
    heartbeat = settings.BRIDGE_HEARTBEAT_FILE
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        now = time.monotonic()
        for child in children:
            child.check(now)
        if all(child.fresh(stale_seconds) for child in children):
            heartbeat.touch()
        stop.wait(CHECK_SECONDS)
    logger.info("stopping %d bridge processes", count)
    running = [child.process for child in children if child.process is not None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        process.wait()
