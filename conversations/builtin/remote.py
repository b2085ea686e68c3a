"""The python tool on a queue of its own (TOOLS_QUEUE): the model's code runs on a tool
worker (`manage.py run_tool_worker`, a host with bubblewrap and no GPU), not inside the
inference worker that serves the answer. Without TOOLS_QUEUE it runs where the answer runs.

A call goes out as a Celery task; the tool worker marks it started, runs it in the
sandbox and pushes the Run to a Redis list the caller waits on. A stop sets a cancel key
the sandbox's loop polls (it kills the sandbox, as a local stop does). A call no tool
worker has started within TOOLS_QUEUE_WAIT_SECONDS is cancelled (a late pickup runs
nothing) and the model is told python is unavailable. Tool workers share SANDBOX_DIR
(a conversation's files must be where its next call runs).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

from django.conf import settings

from conversations.builtin import sandbox
from inference_worker import presence

PREFIX = "chatweb:tool:"
KEEP_SECONDS = 600  # a call's keys outlive any call


def _keys(call_id: str) -> tuple[str, str, str]:
    return f"{PREFIX}started:{call_id}", f"{PREFIX}result:{call_id}", f"{PREFIX}cancel:{call_id}"


def run_python(code: str, key: str, limits: sandbox.Limits, *, cancelled=lambda: False) -> sandbox.Run:
    """Run the call where TOOLS_QUEUE says: on a tool worker, or here."""
    if not settings.TOOLS_QUEUE:
        return sandbox.run_python(code, key, limits, cancelled=cancelled)
    from conversations.tasks import tool_python

    call_id = uuid.uuid4().hex
    started_key, result_key, cancel_key = _keys(call_id)
    r = presence.client()
    tool_python.apply_async(
        kwargs={"call_id": call_id, "code": code, "key": key, "limits": dataclasses.asdict(limits)},
        queue=settings.TOOLS_QUEUE,
    )
    start_by = time.monotonic() + settings.TOOLS_QUEUE_WAIT_SECONDS
    end_by = None  # once started: its wall time, and a margin for the sandbox's own end
    told = False
    while True:
        got = r.blpop([result_key], timeout=0.2)
        if got is not None:
            return _outcome(json.loads(got[1]))
        if cancelled() and not told:
            r.set(cancel_key, "1", ex=KEEP_SECONDS)
            told = True
        now = time.monotonic()
        if end_by is None and r.exists(started_key):
            end_by = now + limits.wall_seconds + 10
        if (end_by is None and now > start_by) or (end_by is not None and now > end_by):
            r.set(cancel_key, "1", ex=KEEP_SECONDS)
            where = "started" if end_by is None else "answered"
            seconds = settings.TOOLS_QUEUE_WAIT_SECONDS if end_by is None else int(limits.wall_seconds + 10)
            raise sandbox.SandboxUnavailable(
                f"no tool worker on the queue {settings.TOOLS_QUEUE!r} {where} the call within {seconds} s"
            )


def _outcome(out: dict) -> sandbox.Run:
    if "unavailable" in out:
        raise sandbox.SandboxUnavailable(out["unavailable"])
    return sandbox.Run(**out["run"])


def serve_python(*, call_id: str, code: str, key: str, limits: dict) -> None:
    """On the tool worker: run one call and hand its Run back."""
    started_key, result_key, cancel_key = _keys(call_id)
    r = presence.client()
    if r.exists(cancel_key):  # given up on (or stopped) before it was taken: run nothing
        return
    r.set(started_key, "1", ex=KEEP_SECONDS)
    try:
        run = sandbox.run_python(code, key, sandbox.Limits(**limits), cancelled=lambda: bool(r.exists(cancel_key)))
        out = {"run": dataclasses.asdict(run)}
    except sandbox.SandboxUnavailable as exc:
        out = {"unavailable": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the caller must hear of it, not wait out the call's time
        out = {"unavailable": f"the tool worker failed ({exc.__class__.__name__}: {exc})"}
    pipe = r.pipeline()
    pipe.rpush(result_key, json.dumps(out))
    pipe.expire(result_key, KEEP_SECONDS)
    pipe.execute()


def remove_workdir(key: str) -> None:
    """A conversation's (or an API container's) files removed where they are kept."""
    if not settings.TOOLS_QUEUE:
        sandbox.remove_workdir(key)
        return
    from conversations.tasks import tool_remove_workdir

    tool_remove_workdir.apply_async(args=[key], queue=settings.TOOLS_QUEUE)
