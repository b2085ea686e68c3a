"""Fail the answers a dead worker left queued or streaming, without waiting for a reader.

A page or socket that opens a conversation reaps its orphans (services.messages_reap_orphans);
an answer nobody opens again would stay `streaming` in the database. So every inference
worker, once Celery is consuming, fails what its own previous life left behind and then
reaps every conversation's orphans every REAP_SECONDS, on a thread of its own.

Why in the workers: they are the long-running processes of this project that a restart
policy brings back (no Celery beat runs here, and a web process may be one of many, or
none while a worker restarts), and a worker that starts is exactly when a dead one's
answers are known to be over. Hooked from this app on Celery's signals, because
inference_worker imports nothing from conversations.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from celery import signals
from django.db import connections

from conversations import services
from conversations.models import Message, MessageStatus

REAP_SECONDS = 30.0  # as long as a streaming answer its live worker let go of waits (STALE_SECONDS)
# Django's set-up imports this before a worker consumes anything: every answer this
# process claims is stamped later (a process's start time from the OS is only as exact
# as the boot time it counts from, to the second).
STARTED = time.time()

log = logging.getLogger(__name__)
_stop = threading.Event()


def messages_reap_previous_life(*, worker: str, since: datetime) -> int:
    """Fail the answers an earlier process under this worker's name left streaming.

    A restarted worker beats under its predecessor's name, so to messages_reap_orphans
    those answers look like a live worker's until they are STALE_SECONDS old. They are
    over: this process claimed nothing before it started (a claim stamps `updated`), and
    a Celery job dies with the process that took it (jobs are acknowledged when they
    start), so no process runs them again.
    """
    orphans = (
        Message.objects.filter(status=MessageStatus.STREAMING, worker=worker, updated__lt=since)
        .select_related("conversation")
        .only("pk", "request_id", "conversation__owner")
    )
    return sum(services.message_reap(message, "worker_lost") for message in orphans)


def _reap_loop(worker: str) -> None:
    since = datetime.fromtimestamp(STARTED, tz=UTC)
    first = True
    while True:
        try:
            if first:
                reaped = messages_reap_previous_life(worker=worker, since=since)
                if reaped:
                    log.warning("failed %d answer(s) an earlier %s left streaming", reaped, worker)
                first = False
            reaped = services.messages_reap_orphans(reaper=worker)
            if reaped:
                log.warning("failed %d answer(s) whose worker is gone", reaped)
        except Exception as exc:  # noqa: BLE001 - the database or Redis is away: the next pass tries again
            log.warning("reaping orphaned answers failed: %s", exc)
        finally:
            connections.close_all()  # this thread's own: not held open between passes
        if _stop.wait(REAP_SECONDS):
            return


def _on_worker_ready(sender, **kwargs) -> None:
    _stop.clear()
    threading.Thread(target=_reap_loop, args=(sender.hostname,), name="reap-orphans", daemon=True).start()


def _on_worker_shutting_down(**kwargs) -> None:
    _stop.set()


def connect() -> None:
    signals.worker_ready.connect(_on_worker_ready, dispatch_uid="conversations.reaping.ready")
    signals.worker_shutting_down.connect(_on_worker_shutting_down, dispatch_uid="conversations.reaping.stop")
