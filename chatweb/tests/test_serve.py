"""scripts/serve.sh (what `make run` runs after its set-up) keeps the service up when its
worker dies, and stops everything it started when asked to."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.request

import psutil
import pytest
import redis as redis_lib
from django.conf import settings

import conftest
from conftest import ROOT, ensure_model_row, free_port, wait_for
from inference_worker import presence

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

MODEL = "smollm2-own"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and alive(proc.pid):
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return members


def test_a_killed_worker_is_started_again_while_the_web_tier_stays_up(tmp_path):
    ensure_model_row(MODEL)
    port = free_port()
    log = tmp_path / "serve.log"
    beats = redis_lib.Redis.from_url(settings.REDIS_URL)
    name = f"{MODEL}-cpu@{socket.gethostname()}"

    def beat() -> dict | None:
        if serve.poll() is not None:
            raise RuntimeError(f"serve.sh exited ({serve.returncode}):\n{log.read_text()[-5000:]}")
        raw = beats.get(f"{presence.WORKER_PREFIX}{name}")
        return json.loads(raw) if raw else None

    with log.open("w") as out:
        serve = subprocess.Popen(
            [str(ROOT / "scripts" / "serve.sh")],
            cwd=ROOT,
            env=conftest.test_environment(HOST="127.0.0.1", PORT=str(port), CHATWEB_MODEL=MODEL),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the test can take down whatever it leaves behind
        )
    try:

        def engine_started() -> tuple[dict, list[int]] | None:
            if not (b := beat()):
                return None
            with contextlib.suppress(psutil.NoSuchProcess):
                children = [p.pid for p in psutil.Process(b["pid"]).children(recursive=True)]
                return (b, children) if children else None  # vLLM's engine runs in processes of its own
            return None

        first, engine = wait_for(engine_started, 300, "the worker's engine", interval=0.5)

        os.kill(first["pid"], signal.SIGKILL)  # the worker alone, as the kernel's OOM killer does

        second = wait_for(lambda: (b := beat()) and b["pid"] != first["pid"] and b, 120, "a new worker", interval=0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=10) as page:
            assert page.status == 200, "the web tier stays up"
        assert not [pid for pid in engine if alive(pid)], "the dead worker's engine was left running"
        output = log.read_text()
        assert "worker stopped (killed by SIGKILL" in output
        assert "starting it again" in output
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(90)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
    assert serve.returncode == 0, log.read_text()[-3000:]
    assert not group(second["pid"]), "the worker or its engine outlived the stop"
    assert not group(serve.pid), "daphne outlived the stop"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
