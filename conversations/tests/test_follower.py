"""What the one follower concludes after a silence (conversations.follower.check_after_silence),
against a real Redis holding a worker's heartbeat (`fake_worker`: a heartbeat with no engine,
the stand-in for a worker whose state the test sets)."""

from __future__ import annotations

import asyncio
import json

import pytest

from accounts.quotas import QuotaExceeded, quota_acquire
from conversations.follower import LOST, Follower, check_after_silence
from conversations.models import Conversation, Message
from conversations.services import NOT_STORED
from inference_worker import presence

pytestmark = pytest.mark.django_db


def _beat(worker, **changes) -> str:
    """The fake worker's heartbeat, changed; returns its name."""
    (name,) = [b["name"] for b in presence.live_workers(worker.name)]
    beat = {**presence.worker_beat(name), **changes}
    presence.client().set(presence.WORKER_PREFIX + name, json.dumps(beat), ex=60)
    return name


def _streaming(users, model, request_id: str) -> Message:
    conversation = Conversation.objects.create(owner=users.alice, model=model)
    question = Message.objects.create(conversation=conversation, role="user", content="hi")
    return Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="streaming",
        request_id=request_id,
        model_name=model.name,
        worker="set below",
    )


def test_an_answer_its_live_worker_holds_is_still_served(users, fake_worker):
    name = _beat(fake_worker, requests=["req-held"])
    follower = Follower("req-held", model=fake_worker.name, worker=name)
    assert [check_after_silence(follower, user_id=users.alice.pk) for _ in range(3)] == [None] * 3


def test_an_end_lost_while_its_live_worker_let_go_ends_the_stream_instead_of_waiting_for_ever(users, fake_worker):
    """Redis away past the worker's wait for it as the answer ended: no end, no outcome, and
    the worker, alive, no longer lists the request. Before: a stream with no stored message
    waited for ever (a CI run hung 352 s on it), sending keep-alives."""
    name = _beat(fake_worker, requests=[])
    follower = Follower("req-lost", model=fake_worker.name, worker=name)
    follower.sent["content"] = "half"
    assert check_after_silence(follower, user_id=None) is None  # a beat can predate the request
    ending = check_after_silence(follower, user_id=None)
    assert ending == {**LOST, "content": "half"}


def test_a_stored_answer_whose_end_was_lost_is_failed_with_its_text_and_its_slot_given_back(users, fake_worker):
    name = _beat(fake_worker, requests=[])
    message = _streaming(users, fake_worker, "req-stored")
    Message.objects.filter(pk=message.pk).update(worker=name)
    users.alice.concurrent_generations = 1
    users.alice.save(update_fields=["concurrent_generations"])
    quota_acquire(user=users.alice, request_id="req-stored")
    follower = Follower("req-stored", model=fake_worker.name, message_id=message.pk, worker=name)
    follower.sent["content"] = "half an answer"
    check_after_silence(follower, user_id=users.alice.pk)
    assert check_after_silence(follower, user_id=users.alice.pk)["code"] == "storage_error"
    message.refresh_from_db()  # as the reaper would leave it later (STALE_SECONDS)
    assert (message.status, message.content, message.error) == ("failed", "half an answer", NOT_STORED)
    quota_acquire(user=users.alice, request_id="the-next-answer")  # the slot is free again
    with pytest.raises(QuotaExceeded):
        quota_acquire(user=users.alice, request_id="one-too-many")


def test_an_end_kept_by_the_worker_is_found_and_the_worker_need_not_hold_it(users, fake_worker):
    name = _beat(fake_worker, requests=[])
    final = {"event": "done", "status": "done", "finish_reason": "stop", "deltas": 3}
    asyncio.run(presence.keep_outcome(presence.async_client(), "req-kept", final, "the whole text", ""))
    follower = Follower("req-kept", model=fake_worker.name, worker=name)
    ending = check_after_silence(follower, user_id=None)
    assert ending["event"] == "ended" and ending["end"] == final
    assert ending["whole"]["content"] == "the whole text"


def test_nothing_is_reaped_while_the_workers_have_not_beaten_since_a_redis_restart(users, fake_worker, monkeypatch):
    """Redis keeps no heartbeat across a restart. Before: a reap in the seconds after one
    failed every streaming answer as lost, their workers alive. `presence.uptime` is set to
    two seconds here (a stand-in: restarting the suite's shared Redis would disturb the
    session's workers), and the answer's worker has no heartbeat."""
    from conversations import services

    message = _streaming(users, fake_worker, "req-after-a-restart")
    Message.objects.filter(pk=message.pk).update(worker="gone-from-redis@host")
    monkeypatch.setattr(presence, "uptime", lambda: 2)
    assert services.messages_reap_orphans(Message.objects.filter(pk=message.pk)) == 0
    monkeypatch.setattr(presence, "uptime", lambda: 3600)
    assert services.messages_reap_orphans(Message.objects.filter(pk=message.pk)) == 1


def test_a_worker_reaps_nothing_before_its_own_heartbeat_is_in_redis(users, fake_worker, monkeypatch):
    """A worker that has just started (again) reaps on a thread of its own; before its first
    beat, the answer it has just claimed looked like a dead worker's and was failed (a run
    of the consumer-watch test here: the answer came, its message said failed)."""
    from conversations import services

    monkeypatch.setattr(presence, "uptime", lambda: 3600)  # not the seconds after a restart
    (alive,) = [w["name"] for w in presence.live_workers(fake_worker.name)]
    message = _streaming(users, fake_worker, "req-claimed-before-the-first-beat")
    Message.objects.filter(pk=message.pk).update(worker="just-started@host")
    one = Message.objects.filter(pk=message.pk)
    assert services.messages_reap_orphans(one, reaper="just-started@host") == 0
    assert services.messages_reap_orphans(one, reaper=alive) == 1  # another's reap, its own beat in


def test_a_reaped_answer_keeps_the_text_its_reader_was_shown(users, fake_worker):
    """The worker was killed between two saves and another worker's reaper failed the answer
    first, with the last save. The reader had been shown more: that is kept, and the reader
    is not sent back to the shorter text (before: the page lost the streamed tail, and an API
    stream ended stream_lost instead of worker_lost; seen in a whole-suite run). Its end has
    the code the live end would have had."""
    from conversations.services import WORKER_LOST, message_fail

    message = _streaming(users, fake_worker, "req-reaped")
    Message.objects.filter(pk=message.pk).update(worker="gone@host", content="Once")
    message_fail(message_id=message.pk, error=WORKER_LOST, code="worker_lost")  # as the reaper does
    follower = Follower("req-reaped", model=fake_worker.name, message_id=message.pk, worker="gone@host")
    follower.sent["content"] = "Once upon a time"
    ending = check_after_silence(follower, user_id=users.alice.pk)
    assert ending["event"] == "ended" and ending["whole"]["content"] == "Once upon a time"
    assert ending["end"]["event"] == "error" and ending["end"]["content"] == "Once upon a time"
    assert ending["end"]["code"] == "worker_lost"  # as the live end says it (before: "failed", an API 500)
    message.refresh_from_db()
    assert (message.status, message.content) == ("failed", "Once upon a time")
    assert follower.finish(ending["whole"], ending["end"]) == [ending["end"]], "nothing lost: the end passes"

    other = Follower("req-reaped", model=fake_worker.name, message_id=message.pk, worker="gone@host")
    other.sent["content"] = "Once upon a different time"  # not a continuation: the store stays
    check_after_silence(other, user_id=users.alice.pk)
    message.refresh_from_db()
    assert message.content == "Once upon a time"


def test_an_answer_reaped_between_the_check_and_its_fail_keeps_what_its_reader_was_shown(
    users, fake_worker, monkeypatch
):
    """The reaper failed the answer (with the last save) after the silence check read it as
    streaming, and before the check failed it itself. The check ends it from the store, with
    the text shown kept (before: its fail changed nothing, the reader was told it had the
    longer text, and the store kept the shorter one)."""
    from conversations import follower as follower_module
    from conversations.services import WORKER_LOST, message_fail

    message = _streaming(users, fake_worker, "req-reaped-meanwhile")
    Message.objects.filter(pk=message.pk).update(worker="gone@host", content="Once")
    read = follower_module.whole_text

    def read_then_reaped(follower):
        out = read(follower)
        message_fail(message_id=message.pk, error=WORKER_LOST, code="worker_lost")  # the reaper, just after
        return out

    monkeypatch.setattr(follower_module, "whole_text", read_then_reaped)
    monkeypatch.setattr(presence, "uptime", lambda: 3600)  # not the seconds after a Redis restart
    follower = Follower("req-reaped-meanwhile", model=fake_worker.name, message_id=message.pk, worker="gone@host")
    follower.sent["content"] = "Once upon a time"
    ending = check_after_silence(follower, user_id=users.alice.pk)
    assert ending["event"] == "ended" and ending["whole"]["content"] == "Once upon a time"
    assert (ending["end"]["code"], ending["end"]["content"]) == ("worker_lost", "Once upon a time")
    message.refresh_from_db()
    assert (message.status, message.content) == ("failed", "Once upon a time")


def test_a_mended_text_carries_the_steps_so_far_and_a_stored_one_its_steps(users, fake_worker):
    """A page that lost deltas while a tool ran gets the steps back with the text: from the
    worker's snapshot, and from the stored message when no snapshot comes."""
    from conversations.follower import stored_text, whole_text

    steps = [{"id": "step_1", "tool": "python", "kind": "python", "status": "done", "output": "42\n"}]
    follower = Follower("r1", model=fake_worker.name, message_id=None, worker="w")
    follower.take({"event": "delta", "seq": 0, "content": "Hel"})
    follower.hold()
    (mended,) = follower.mend({"content": "Hello", "steps": steps}, seq=3, replace=True)
    assert mended["text"] == {"content": "Hello", "reasoning": "", "arguments": "", "steps": steps}
    message = _streaming(users, fake_worker, "r2")
    message.tool_steps = steps
    message.save()
    stored = Follower("r2", model=fake_worker.name, message_id=message.pk, worker="w")
    assert stored_text(stored)["steps"] == steps
    message.status = "stopped"
    message.save()
    whole, end = whole_text(stored)
    assert whole["steps"] == steps and end["steps"] == steps
