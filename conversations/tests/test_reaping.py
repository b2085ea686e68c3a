"""An answer a dead worker left streaming is failed when a worker starts, without anyone
opening its conversation (conversations/reaping.py)."""

from __future__ import annotations

import json
import socket

import pytest

from accounts.quotas import QuotaExceeded, quota_acquire
from conftest import ensure_model_row, wait_for
from conversations.models import Conversation, Message
from inference_worker import presence

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

MODEL = "smollm2-own"
TAG = "reaper"


def test_a_starting_worker_fails_the_answers_dead_workers_left_streaming(users, start_worker):
    model = ensure_model_row(MODEL)
    name = f"{MODEL}-{TAG}@{socket.gethostname()}"
    users.alice.concurrent_generations = 2
    users.alice.save(update_fields=["concurrent_generations"])
    conversation = Conversation.objects.create(owner=users.alice, model=model)
    question = Message.objects.create(conversation=conversation, role="user", content="hi")

    def streaming(worker: str, request_id: str) -> Message:
        quota_acquire(user=users.alice, request_id=request_id)  # each holds one of alice's two slots
        return Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            status="streaming",
            content="half an ans",
            request_id=request_id,
            model_name=model.name,
            worker=worker,
        )

    # Killed a moment ago, its last heartbeat (still listing the answer) not yet expired;
    # the new worker beats under the same name.
    last_life = streaming(name, "held-by-its-last-life")
    beat = {"name": name, "model": model.name, "state": "busy", "requests": [last_life.request_id]}
    presence.client().set(f"{presence.WORKER_PREFIX}{name}", json.dumps(beat), ex=presence.HEARTBEAT_TTL)
    presence.client().sadd(presence.WORKERS_KEY, name)
    gone = streaming("smollm2-own-gpu0@a-host-that-is-gone", "held-by-a-worker-that-is-gone")
    with pytest.raises(QuotaExceeded):
        quota_acquire(user=users.alice, request_id="a-third-answer")

    worker = start_worker(MODEL, tag=TAG, wait=False)
    try:

        def failed() -> bool:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{worker.log.read_text()[-5000:]}")
            return not Message.objects.filter(pk__in=[last_life.pk, gone.pk], status="streaming").exists()

        wait_for(failed, 150, "the orphaned answers to be failed", interval=0.5)
    finally:
        worker.kill()
    for message in (last_life, gone):
        message.refresh_from_db()
        assert message.status == "failed"
        assert message.content == "half an ans"
        assert "partial answer is kept" in message.error
    quota_acquire(user=users.alice, request_id="a-third-answer")  # their slots were given back
