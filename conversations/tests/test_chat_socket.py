"""The chat websocket against the real worker: branches, titles, the queue, who sees reasoning, Origin."""

from __future__ import annotations

import os
import time

import pytest

from accounts.models import SiteSettings
from conftest import BREAD, GPT_OSS_ANSWER, GPT_OSS_REASONING, ChatSocket, ensure_model_row, page_text, session_cookie
from conversations.models import Conversation, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]  # `worker`: from the fixtures

FRANCE = "What is the capital of France?"


def turn(socket: ChatSocket, **frame) -> list[dict]:
    socket.send(**frame)
    return socket.until("done", "error", timeout=180)


def test_regenerate_and_edit_make_branches_and_keep_the_old_ones(live_daphne, users, smollm2):
    # titled already: a title job's event would land among the next turn's events
    conv = Conversation.objects.create(owner=users.alice, model=smollm2, title="t", title_auto=False)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        first = turn(socket, type="send", content=FRANCE, params={"temperature": 0})
        question_id, answer_id = first[0]["user_message_id"], first[0]["message_id"]

        again = turn(socket, type="regenerate", message_id=answer_id, params={"temperature": 0})
        assert again[0]["type"] == "queued" and again[0]["user_message_id"] == question_id and again[0]["regenerate"]
        assert again[-1]["type"] == "done"
        regenerated = Message.objects.get(pk=again[0]["message_id"])
        assert regenerated.parent_id == question_id and regenerated.pk != answer_id
        assert regenerated.content == "The capital of France is Paris."

        edited = turn(socket, type="send", content="What is the capital of Italy?", edit_of=question_id)
        assert edited[-1]["type"] == "done"
        new_question = Message.objects.get(pk=edited[0]["user_message_id"])
        assert new_question.parent_id is None and new_question.content == "What is the capital of Italy?"
        edit_answer = Message.objects.get(pk=edited[0]["message_id"])
        assert edit_answer.status == "done" and edit_answer.content and "Paris" not in edit_answer.content
        # the edit's answer saw the edited question alone, not the France exchange
        assert edit_answer.prompt_tokens < Message.objects.get(pk=answer_id).prompt_tokens + 5

        # continuing a branch: the history sent to the model is that branch only
        follow = turn(socket, type="send", content="And of Spain?", parent_id=answer_id)
        follow_question = Message.objects.get(pk=follow[0]["user_message_id"])
        assert follow_question.parent_id == answer_id
    finally:
        socket.close()
    # nothing was overwritten: 2 questions at the root, 2 answers to the first, 1 to the edit
    assert Message.objects.filter(conversation=conv, parent=None).count() == 2
    assert Message.objects.filter(parent_id=question_id).count() == 2
    assert Message.objects.get(pk=answer_id).content == "The capital of France is Paris."


def test_bad_branch_targets_are_refused_and_store_nothing(live_daphne, users, fake_worker):
    mine = Conversation.objects.create(owner=users.alice, model=fake_worker)
    theirs = Conversation.objects.create(owner=users.bob, model=fake_worker)
    their_question = Message.objects.create(conversation=theirs, role="user", content="bob's question")
    socket = ChatSocket(live_daphne, users.alice, mine.pk)
    try:
        for frame, code in [
            ({"type": "regenerate", "message_id": their_question.pk}, "not_found"),
            ({"type": "regenerate", "message_id": "1"}, "not_found"),
            ({"type": "send", "content": "hi", "edit_of": their_question.pk}, "not_found"),
            ({"type": "send", "content": "hi", "parent_id": their_question.pk}, "not_found"),
            ({"type": "send", "content": "   "}, "empty_message"),
            ({"type": "send", "content": "hi", "params": {"temperature": 5}}, "invalid_params"),
            ({"type": "send", "content": "hi", "params": {"ignore_eos": "yes"}}, "invalid_params"),
        ]:
            socket.send(**frame)
            event = socket.recv()
            assert event["type"] == "error" and event["code"] == code, (frame, event)
    finally:
        socket.close()
    assert not Message.objects.filter(conversation=mine).exists()
    assert Message.objects.filter(conversation=theirs).count() == 1


def test_only_a_stop_that_caught_the_answer_queued_ends_it_for_the_worker(live_daphne, users, fake_worker):
    """A queued answer has no worker to say it ended: the socket says so. A running one is
    ended by its worker, with its text and usage, even when the worker stores "stopped"
    before the stop request reads the message back. Before, the socket took that for a
    stop while queued: it sent a bare end and stopped following, and the page lost the
    rest of the text (a CI run: "In" shown, "In the ..." stored; an end with no usage)."""
    conv = Conversation.objects.create(owner=users.alice, model=fake_worker)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        socket.send(type="send", content="hi")
        queued = socket.until("queued")[-1]
        socket.send(type="stop", request_id=queued["request_id"])
        assert socket.until("done")[-1] == {
            "type": "done",
            "status": "stopped",
            "finish_reason": "abort",
            "message_id": queued["message_id"],
        }

        socket.send(type="send", content="again", parent_id=queued["message_id"])
        running = socket.until("queued")[-1]
        # its worker claims it, is told to stop, and stores the end before the stop reads it back
        Message.objects.filter(pk=running["message_id"]).update(status="stopped", finish_reason="abort")
        socket.send(type="stop", request_id=running["request_id"])
        socket.send(type="ping")
        until_pong = [e["type"] for e in socket.until("pong", timeout=10)]
        assert "done" not in until_pong, until_pong  # the worker's end is to come, and the socket follows it
    finally:
        socket.close()


def test_the_first_exchange_titles_the_conversation_after_the_answer(live_daphne, users, gpt_oss):
    conv = Conversation.objects.create(owner=users.alice, model=gpt_oss)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        events = turn(socket, type="send", content="What is the answer to everything, please?")
        assert events[0]["title"] == "What is the answer to everything, please?"  # at once, from the question
        assert events[-1]["type"] == "done"
        title = socket.until("title", timeout=120)[-1]
    finally:
        socket.close()
    # the model (scripted to answer GPT_OSS_ANSWER) wrote the title, after "done"
    assert title["title"] == GPT_OSS_ANSWER.rstrip(".")  # cleaned: no full stop in a title
    conv.refresh_from_db()
    assert conv.title == title["title"] and conv.title_auto


def test_a_renamed_conversation_keeps_its_name(live_daphne, users, gpt_oss):
    conv = Conversation.objects.create(owner=users.alice, model=gpt_oss, title="Mine", title_auto=False)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        events = turn(socket, type="send", content="Anything?")
        assert events[0]["title"] == "Mine" and events[-1]["type"] == "done"
        time.sleep(3)
    finally:
        socket.close()
    conv.refresh_from_db()
    assert conv.title == "Mine"


@pytest.mark.parametrize(
    ("visibility", "alice_sees", "admin_sees"),
    [("everyone", True, True), ("admins", False, True), ("nobody", False, False)],
)
def test_reasoning_reaches_only_those_allowed(live_daphne, users, gpt_oss, visibility, alice_sees, admin_sees):
    settings = SiteSettings.load()
    settings.reasoning_visibility = visibility
    settings.save()
    for user, sees in ((users.alice, alice_sees), (users.admin, admin_sees)):
        conv = Conversation.objects.create(owner=user, model=gpt_oss, title="t", title_auto=False)
        socket = ChatSocket(live_daphne, user, conv.pk)
        try:
            events = turn(socket, type="send", content="What is the answer?")
        finally:
            socket.close()
        assert events[-1]["type"] == "done", events[-1]
        streamed = "".join(e.get("content", "") for e in events if e["type"] == "delta")
        reasoning = "".join(e.get("reasoning", "") for e in events if e["type"] == "delta")
        assert streamed == GPT_OSS_ANSWER
        assert reasoning == (GPT_OSS_REASONING if sees else ""), (visibility, user.email)
        assert ("reasoning_tokens" in events[-1]["usage"]) is sees
        # the page and the exports follow the same rule
        from django.test import Client

        client = Client()
        client.force_login(user)
        page = client.get(f"/c/{conv.pk}/").context["page_data"]
        assert page["messages"][-1]["reasoning"] == (GPT_OSS_REASONING if sees else "")
        assert (GPT_OSS_REASONING in client.get(f"/c/{conv.pk}/export.md").content.decode()) is sees
        # and it is stored either way
        assert Message.objects.filter(conversation=conv, role="assistant").get().reasoning == GPT_OSS_REASONING


def test_the_websocket_refuses_a_foreign_origin(live_daphne, users, fake_worker):
    from django.conf import settings
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    conv = Conversation.objects.create(owner=users.alice, model=fake_worker)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_cookie(users.alice)}"
    for origin in ("https://evil.example", "null"):
        with pytest.raises(InvalidStatus) as refused:
            with connect(
                f"{live_daphne.ws_url}/ws/chat/{conv.pk}/",
                additional_headers={"Cookie": cookie, "Origin": origin},
                open_timeout=10,
            ) as ws:
                ws.recv(timeout=5)
        assert refused.value.response.status_code == 403
    # the page's own origin is let in
    ChatSocket(live_daphne, users.alice, conv.pk).close()


def bread_socket(server, user) -> ChatSocket:
    """A socket on a new conversation with the bread worker's model, room for all of BREAD."""
    conversation = Conversation.objects.create(
        owner=user,
        model=ensure_model_row("gpt-oss-single"),
        title="bread",
        title_auto=False,
        params={"max_tokens": 400},
    )
    return ChatSocket(server, user, conversation.pk)


def test_a_waiting_answer_is_told_its_place_in_the_queue(live_daphne, users, bread_worker):
    """A worker that runs one answer at a time, and three chats sent at once. The worker is
    frozen while they are sent (well within its heartbeat's TTL), so none has started when
    the last is admitted: sent to a running worker, the first answer (half a second here)
    could end before the third was admitted, and the third was rightly told nothing (a
    fresh-clone run)."""
    import signal

    sockets = []
    try:
        for _ in range(3):
            sockets.append(bread_socket(live_daphne, users.alice))
        os.killpg(bread_worker.process.pid, signal.SIGSTOP)
        try:
            for socket in sockets:
                socket.send(type="send", content="Tell me about bread.")
            first = sockets[2].until("queue", "error", timeout=5)
        finally:
            os.killpg(bread_worker.process.pid, signal.SIGCONT)
        outcomes = [socket.until("done", "error", timeout=240) for socket in sockets]
        outcomes[2] = first + outcomes[2]
    finally:
        for socket in sockets:
            socket.close()
    for events in outcomes:
        assert events[-1]["type"] == "done", events[-1]
        assert "".join(e.get("content", "") for e in events if e["type"] == "delta") == BREAD
    last = [e["type"] if e["type"] != "queue" else ("queue", e["ahead"]) for e in outcomes[2]]
    places = [k[1] for k in last if isinstance(k, tuple)]
    assert places and places[0] >= 1, last  # told at once that others are ahead
    assert places == sorted(places, reverse=True)  # and the place only moves forward
    assert last.index("start") > last.index(("queue", places[0]))


def test_a_stalled_page_server_relays_the_whole_answer_before_its_end(live_daphne, users, bread_worker):
    """daphne frozen while the worker streams and stores the whole answer: when it wakes, its
    watchdog has heard nothing for longer than it waits before checking the stored message,
    and finds it finished. The stored end must not overtake the deltas still on their way,
    and nothing may follow the end (a GC pause, a descheduled VM or swap do the same)."""
    import signal

    from conversations.follower import SILENCE_BEFORE_CHECK
    from conversations.following import WATCHDOG_SECONDS

    socket = bread_socket(live_daphne, users.alice)
    try:
        socket.send(type="send", content="Tell me about bread.")
        events = socket.until("start", "error", timeout=240)
        assert events[-1]["type"] == "start", events[-1]
        answer = Message.objects.get(pk=events[-1]["message_id"])
        os.kill(live_daphne.process.pid, signal.SIGSTOP)
        try:
            for _ in range(600):
                answer.refresh_from_db()
                if answer.status == "done":
                    break
                time.sleep(0.1)
            time.sleep(SILENCE_BEFORE_CHECK + WATCHDOG_SECONDS)
        finally:
            os.kill(live_daphne.process.pid, signal.SIGCONT)
        events += socket.until("done", "error", timeout=60)
        socket.send(type="ping")
        events += socket.until("pong", timeout=30)  # whatever came after the end, up to now
    finally:
        socket.close()
    assert answer.status == "done" and answer.content == BREAD
    kinds = [e["type"] for e in events]
    assert kinds.count("done") == 1 and kinds[-2:] == ["done", "pong"], kinds
    assert "".join(e.get("content", "") for e in events if e["type"] == "delta") == BREAD
    assert {e.get("message_id") for e in events if e["type"] != "pong"} == {answer.pk}


def test_a_page_that_missed_the_end_gets_the_stored_outcome(live_daphne, users, smollm2):
    mine = Conversation.objects.create(owner=users.alice, model=smollm2, title="t", title_auto=False)
    theirs = Conversation.objects.create(owner=users.bob, model=smollm2)
    their_answer = Message.objects.create(conversation=theirs, role="assistant", content="bob's secret")
    first = ChatSocket(live_daphne, users.alice, mine.pk)
    try:
        first.send(type="send", content=FRANCE)
        queued = first.until("queued")[-1]
    finally:
        first.close()  # gone before the answer ends
    answer = Message.objects.get(pk=queued["message_id"])
    for _ in range(600):
        answer.refresh_from_db()
        if answer.status == "done":
            break
        time.sleep(0.2)
    again = ChatSocket(live_daphne, users.alice, mine.pk)
    try:
        again.send(type="ping")
        assert again.recv()["type"] == "pong" and again.ready == {"type": "ready", "active": None}
        again.send(type="sync", message_id=answer.pk)
        outcome = again.recv()
        assert outcome["type"] == "done" and outcome["recovered"] and outcome["message_id"] == answer.pk
        assert outcome["content"] == "The capital of France is Paris." == answer.content
        again.send(type="sync", message_id=their_answer.pk)  # not in this conversation: no answer at all
        again.send(type="ping")
        assert again.recv() == {"type": "pong"}
    finally:
        again.close()


def test_ignore_eos_writes_exactly_max_tokens(live_daphne, users, smollm2):
    """vLLM's own extension, as on the API: the benchmarks ask every server for the same length."""
    conversation = Conversation.objects.create(owner=users.alice, model=smollm2)
    socket = ChatSocket(live_daphne, users.alice, conversation.pk)
    try:
        done = turn(socket, type="send", content=FRANCE, params={"max_tokens": 30, "ignore_eos": True})[-1]
    finally:
        socket.close()
    assert done["type"] == "done" and done["finish_reason"] == "length", done
    assert done["usage"]["completion_tokens"] == 30  # the answer itself ends after about 8


def test_a_redis_restart_mid_answer_leaves_the_page_and_the_store_whole(live_daphne, users, bread_worker, redis_server):
    """Redis away for longer than the worker retries a publish: the deltas sent meanwhile
    are lost on the way. The socket notices the gap in their seq and starts again from
    the worker's text, or, if the end was lost too, its watchdog ends the answer from the
    stored message (before: the page kept a hole until reloaded)."""
    socket = bread_socket(live_daphne, users.alice)
    try:
        socket.send(type="send", content="Tell me about bread.")
        events = socket.until("delta", "error", timeout=240)
        bread_worker.redis_outage(redis_server, 1.5)  # the worker gives a publish up after 1.2 s
        events += socket.until("done", "error", timeout=60)
    finally:
        socket.close()
    answer = Message.objects.get(pk=events[-1]["message_id"])
    assert events[-1]["type"] == "done", events[-1]
    assert answer.status == "done" and answer.content == BREAD
    # mended: a resume from the worker's text, or (the end lost too) the watchdog's stored end
    assert any(e["type"] == "resume" or e.get("recovered") for e in events), events
    assert page_text(events) == BREAD
