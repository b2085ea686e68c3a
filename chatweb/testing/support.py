"""What the test fixtures share: free ports, waiting, the tests' own Redis server, and the
environment of the processes a test starts (daphne, workers) on the test database.

Test support only: the root conftest.py registers the fixtures of this package
(pytest_plugins) and re-exports what tests import, so tests keep importing from conftest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct-horse-battery-staple-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """The tests' own redis-server on the port of settings.REDIS_URL (6399)."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        self.port = urlparse(url).port or 6379
        self.client = redis_lib.Redis.from_url(url, socket_timeout=1)
        self.process: subprocess.Popen | None = None

    def up(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis_lib.ConnectionError:
            return False

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit("redis-server is not installed: run scripts/setup.sh (or apt-get install redis-server)", 2)
        if self.up():  # a leftover from an earlier run: replace it with our own
            try:
                self.client.shutdown(nosave=True)
            except redis_lib.ConnectionError:
                pass
            wait_for(lambda: not self.up(), 10, "the old redis-server to stop")
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.up, 10, "redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class LiveServer:
    url: str
    ws_url: str
    process: subprocess.Popen
    log: Path


def test_database_url() -> str:
    """The test database (pytest-django has renamed it by now) as a DATABASE_URL."""
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    from urllib.parse import quote

    auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_environment(**extra: str) -> dict[str, str]:
    """Environment for a server or worker process that shares the test database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="false",
        STATIC_MANIFEST="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextmanager
def daphne_server(log: Path, **env: str) -> Iterator[LiveServer]:
    """A real daphne serving chatweb.asgi on a free port, on the test database; `env`
    adds to the test environment (settings a test needs the server to start with)."""
    port = free_port()
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatweb.asgi:application"],
            cwd=ROOT,
            env=test_environment(**env),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited:\n{log.read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(up, 30, "daphne")
        yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", proc, log)
    finally:
        proc.terminate()
        proc.wait(10)
