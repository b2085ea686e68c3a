"""python calls on the tool queue (TOOLS_QUEUE): run by a real tool worker
(`manage.py run_tool_worker`, chatweb/testing/workers.py), stopped from here, files kept
and removed there, and a queue nobody serves told to the model."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from chatweb.testing.workers import TOOLS_QUEUE
from conftest import wait_for
from conversations.builtin import remote, runner, sandbox


@pytest.fixture
def on_the_queue(settings, tool_worker, sandbox_root):
    settings.TOOLS_QUEUE = TOOLS_QUEUE
    settings.SANDBOX_DIR = Path("/nonexistent/here")  # the calls' files are the tool worker's, not this host's
    return Path(sandbox_root)


def test_a_call_runs_on_the_tool_worker_and_its_files_stay_there(on_the_queue):
    limits = sandbox.Limits.from_settings(wall_seconds=10)
    first = remote.run_python("open('/mnt/data/n', 'w').write('6')\nprint(6 * 7)", "cremote1", limits)
    assert (first.output, first.exit_code, first.stopped_by) == ("42\n", 0, "")
    assert (on_the_queue / "cremote1" / "n").read_text() == "6"  # in the tool worker's SANDBOX_DIR
    second = remote.run_python("print(open('/mnt/data/n').read())", "cremote1", limits)
    assert second.output == "6\n"
    remote.remove_workdir("cremote1")
    wait_for(lambda: not (on_the_queue / "cremote1").exists(), 10, "the files removed by the tool worker")


def test_a_stop_kills_the_call_on_the_tool_worker(on_the_queue):
    asked = time.monotonic()
    run = remote.run_python(
        "import time\nprint('up', flush=True)\ntime.sleep(60)",
        "cremote2",
        sandbox.Limits.from_settings(wall_seconds=60),
        cancelled=lambda: time.monotonic() - asked > 1,
    )
    assert run.stopped_by == "cancelled" and run.output == "up\n"
    assert time.monotonic() - asked < 8


def test_a_queue_nobody_serves_tells_the_model_python_is_unavailable(settings, redis_server):
    settings.TOOLS_QUEUE, settings.TOOLS_QUEUE_WAIT_SECONDS = "nobody-serves-this", 1
    asked = time.monotonic()
    tools = runner.AnswerTools(sandbox_key="cremote3", enabled=["python"])
    outcome = tools.run("python", "print(1)", tools.start("python", "print(1)"), lambda: False)
    assert time.monotonic() - asked < 4
    assert outcome.step["status"] == "failed"
    assert outcome.text.startswith("python is unavailable: no tool worker on the queue 'nobody-serves-this' started")


def test_a_call_given_up_on_before_a_tool_worker_took_it_runs_nothing(settings, redis_server, tmp_path):
    settings.SANDBOX_DIR = tmp_path
    started_key, result_key, cancel_key = remote._keys("late")
    redis_server.client.set(cancel_key, "1")
    limits = dataclasses.asdict(sandbox.Limits.from_settings())
    remote.serve_python(call_id="late", code="open('/mnt/data/ran', 'w')", key="cremote4", limits=limits)
    assert not redis_server.client.exists(started_key) and not redis_server.client.exists(result_key)
    assert not (tmp_path / "cremote4").exists()
