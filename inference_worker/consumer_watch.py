"""A worker whose Celery consumer stops taking jobs starts itself again.

Celery's users report workers on Redis that reconnect after the broker went away and
never take another job (celery#8030, #10205, the second with Celery 5.6 in 2026): the
process, its heartbeat and its engine all look alive, so nothing else notices, and the
model's answers wait in the queue for ever. Not reproduced here: the runs that seemed to
show it (2026-12-02) had a stray worker, left by an interrupted run, taking the jobs.
This is the guard, cheap while nothing is wrong.

The watch sees jobs waiting in the worker's queue, a free slot, and no job taken for
`stall_seconds`. It then stops the engine and replaces the process with a new run of the
same command (os.execv: the same pid, so a supervisor sees no exit), which connects
afresh; the engine loads again, and the waiting jobs are taken.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

import redis

from inference_worker import presence

if TYPE_CHECKING:
    from inference_worker.engine import EngineHost

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0


def watch(host: EngineHost, queue: str, slots: int, stall_seconds: float) -> threading.Thread | None:
    """Watch the consumer in a daemon thread (stall_seconds 0: not at all)."""
    if stall_seconds <= 0:
        return None
    thread = threading.Thread(
        target=_watch, args=(host, queue, slots, stall_seconds), name="consumer-watch", daemon=True
    )
    thread.start()
    return thread


def _watch(host: EngineHost, queue: str, slots: int, stall_seconds: float) -> None:
    taken, waiting_since = host.submitted, None
    while True:
        time.sleep(min(CHECK_SECONDS, stall_seconds / 2))
        try:
            waiting = presence.client().llen(queue)
        except (OSError, redis.RedisError):  # Redis away: no verdict
            waiting_since = None
            continue
        if not waiting or host.submitted != taken or len(host.requests) >= slots:
            taken, waiting_since = host.submitted, None
            continue
        waiting_since = waiting_since or time.monotonic()
        if time.monotonic() - waiting_since >= stall_seconds:
            log.error(
                "%s: %d jobs have waited %.0f s in %s with a slot free and none taken; "
                "the Celery consumer is stuck: starting this worker again",
                host.worker_name,
                waiting,
                time.monotonic() - waiting_since,
                queue,
            )
            _start_again(host)


def _start_again(host: EngineHost) -> None:
    try:
        host.stop(timeout=30)  # the engine's processes go with it
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.argv])
