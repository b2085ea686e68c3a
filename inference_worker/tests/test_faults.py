"""Faults around a running answer that the other test files do not cover: the database
locked past its timeout, and an answer its live worker let go of.

(Elsewhere: kill -9 of a worker and a second worker on the same queue in
test_worker.py, a Redis restart in test_worker.py, a client leaving mid-stream in
test_api_chat.py, a page that reconnects or missed the end in test_chat_socket.py and
test_browser_chat.py.)
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from django.conf import settings
from django.utils import timezone

from conftest import ChatSocket
from conversations import services
from conversations.models import Conversation, Message
from inference_worker import presence

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

LONG = "Write a very long story about a dragon who learns to bake bread. Use many chapters."
SQLITE = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


@pytest.mark.skipif(not SQLITE, reason="locks the SQLite file; PostgreSQL goes through the same retries")
def test_an_answer_survives_the_database_locked_past_its_timeout(live_daphne, users, smollm2):
    timeout = settings.DATABASES["default"]["OPTIONS"]["timeout"]
    conversation = Conversation.objects.create(owner=users.alice, model=smollm2)
    socket = ChatSocket(live_daphne, users.alice, conversation.pk)
    try:
        socket.send(type="send", content=LONG, params={"max_tokens": 500, "ignore_eos": True})
        events = socket.until("delta")
        locker = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=30)
        locker.execute("BEGIN EXCLUSIVE")  # no one else writes until the rollback
        try:
            deadline = time.monotonic() + timeout + 3  # a progress save gives up meanwhile
            while time.monotonic() < deadline and events[-1]["type"] not in ("done", "error"):
                events.append(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            pass
        finally:
            locker.rollback()
            locker.close()
        if events[-1]["type"] not in ("done", "error"):
            events += socket.until("done", "error", timeout=180)
    finally:
        socket.close()
    assert events[-1]["type"] == "done", events[-1]
    streamed = "".join(e.get("content", "") for e in events if e["type"] == "delta")
    message = Message.objects.get(pk=events[0]["message_id"])
    assert message.status == "done" and message.completion_tokens == 500
    assert message.content == streamed


def test_an_answer_its_live_worker_let_go_is_failed_once_stale(live_daphne, users, smollm2, smollm2_worker):
    """The worker gave up storing an outcome (the database was away for minutes): the web
    tier fails the message instead of showing it streaming forever."""
    beat = smollm2_worker.wait_state(("ready", "busy"), 60)
    conversation = Conversation.objects.create(owner=users.alice, model=smollm2)
    question = Message.objects.create(conversation=conversation, role="user", content="hi")

    def streaming(request_id: str, age: float) -> Message:
        message = Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            status="streaming",
            content="half an ans",
            request_id=request_id,
            model_name=smollm2.name,
            worker=beat["name"],
        )
        Message.objects.filter(pk=message.pk).update(updated=timezone.now() - timezone.timedelta(seconds=age))
        return message

    let_go = streaming("not-held-by-the-worker", services.STALE_SECONDS + 5)
    recent = streaming("not-held-yet", 1)  # just claimed: the next heartbeat will list it
    assert services.messages_reap_orphans(conversation.messages.all()) == 1
    let_go.refresh_from_db()
    recent.refresh_from_db()
    assert let_go.status == "failed" and let_go.error == services.NOT_STORED and let_go.content == "half an ans"
    assert recent.status == "streaming"

    # A running answer is never reaped, however long since its last save.
    other = Conversation.objects.create(owner=users.alice, model=smollm2)
    socket = ChatSocket(live_daphne, users.alice, other.pk)
    try:
        socket.send(type="send", content=LONG, params={"max_tokens": 1000, "ignore_eos": True})
        started = socket.until("delta")
        running, request_id = started[0]["message_id"], started[0]["request_id"]
        time.sleep(presence.HEARTBEAT_SECONDS + 0.5)  # a heartbeat that lists it
        Message.objects.filter(pk=running).update(updated=timezone.now() - timezone.timedelta(seconds=600))
        assert services.messages_reap_orphans(Message.objects.filter(pk=running)) == 0
        assert Message.objects.get(pk=running).status == "streaming", "it was still running when checked"
        socket.send(type="stop", request_id=request_id)
        assert socket.until("done", "error")[-1]["type"] == "done"
    finally:
        socket.close()
