"""The built-in tool loop through the real worker: the scripted tiny gpt-oss searches,
opens a page, runs python and answers; each call is run for real (the stand-in search
engine and site of chatweb/testing/web.py, bubblewrap), shown as it runs, and stored."""

from __future__ import annotations

import time

import pytest

from accounts.models import SiteSettings, UsageDay
from chatweb.testing.workers import LIMIT_QUESTION, SLEEP_QUESTION, TOOLS_ANSWER, TOOLS_CODE, TOOLS_QUESTION
from conftest import ChatSocket, ask, wait_for
from conversations.models import Conversation, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def _enable(browser=True, python=True, visibility="everyone"):
    site = SiteSettings.load()
    site.browser_tool_enabled, site.python_tool_enabled = browser, python
    site.reasoning_visibility = visibility
    site.save()


def _steps(events):
    """Each step's last state, in the order they began."""
    steps = {}
    for event in events:
        if event["type"] == "delta" and "step" in event:
            steps[event["step"]["id"]] = event["step"]
    return list(steps.values())


@pytest.mark.parametrize("visibility", ["everyone", "nobody"])
def test_a_search_an_open_and_python_then_the_answer(live_daphne, users, gpt_oss, web_stand_ins, visibility):
    site, engine = web_stand_ins
    _enable(visibility=visibility)
    conv = Conversation.objects.create(
        owner=users.alice, model=gpt_oss, title="t", title_auto=False, builtin_tools=["browser", "python"]
    )
    events = ask(live_daphne, users.alice, conv, TOOLS_QUESTION, max_tokens=400)
    assert events[-1]["type"] == "done", events[-1]
    content = "".join(e.get("content", "") for e in events if e["type"] == "delta")
    reasoning = "".join(e.get("reasoning", "") for e in events if e["type"] == "delta")
    assert content == TOOLS_ANSWER
    assert (reasoning != "") is (visibility == "everyone")
    assert "print(6" not in reasoning and "history of tea" not in reasoning  # calls are steps, not thoughts

    running = [e["step"] for e in events if e["type"] == "delta" and e.get("step", {}).get("status") == "running"]
    assert [s["tool"] for s in running] == ["browser.search", "browser.open", "python"]
    search, opened, python = _steps(events)
    assert (search["kind"], search["query"], search["status"]) == ("search", "history of tea", "done")
    assert search["title"] == "Search results for `history of tea`"
    assert (opened["kind"], opened["status"], opened["url"], opened["cursor"]) == (
        "open", "done", site.base + "/tea", 1,
    )  # fmt: skip
    assert opened["title"] == "Tea & its history"
    assert (python["kind"], python["code"], python["output"], python["exit_code"]) == ("python", TOOLS_CODE, "42\n", 0)
    assert all(s["seconds"] >= 0 for s in (search, opened, python))
    assert any(r["path"].startswith("/search?q=history+of+tea") for r in engine.requests)
    assert [r["path"] for r in site.requests].count("/tea") >= 1

    answer = Message.objects.get(conversation=conv, role="assistant")
    assert answer.status == "done" and answer.content == TOOLS_ANSWER
    assert [s["tool"] for s in answer.tool_steps] == ["browser.search", "browser.open", "python"]
    assert answer.tool_steps[2]["output"] == "42\n"
    assert events[-1]["steps"] == answer.tool_steps
    # every step's tokens are counted: the prompt is the first request's, the rest are the model's
    assert answer.completion_tokens > 40
    # and the calls, in the user's usage of the day
    wait_for(lambda: UsageDay.objects.filter(user=users.alice, tool_calls=3).exists(), 10, "the calls counted")


def test_tools_off_means_the_model_is_not_told(live_daphne, users, gpt_oss):
    _enable(browser=False, python=False)
    conv = Conversation.objects.create(
        owner=users.alice, model=gpt_oss, title="t", title_auto=False, builtin_tools=["browser", "python"]
    )
    events = ask(live_daphne, users.alice, conv, TOOLS_QUESTION, max_tokens=400)
    # The script still writes its calls; with no tools declared they are nobody's to run:
    # no step, nothing run, and the answer ends at the first call.
    assert not _steps(events)
    answer = Message.objects.get(conversation=conv, role="assistant")
    assert answer.tool_steps == []


def _ask(live_daphne, users, gpt_oss, question, *, stop_when=None, before_stop=None):
    _enable()
    conv = Conversation.objects.create(
        owner=users.alice, model=gpt_oss, title="t", title_auto=False, builtin_tools=["browser", "python"]
    )
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        socket.send(type="send", content=question, params={"max_tokens": 600})
        events = [socket.recv(timeout=60)]
        request_id = events[0]["request_id"]  # "queued"
        while stop_when is not None and not stop_when(events[-1]):
            events.append(socket.recv(timeout=120))
        if before_stop is not None:
            before_stop(conv)
        if stop_when is not None:
            socket.send(type="stop", request_id=request_id)
        events += socket.until("done", "error", timeout=180)
    finally:
        socket.close()
    return conv, events


def test_calls_past_the_limit_are_not_run_and_end_the_answer(live_daphne, users, gpt_oss):
    conv, events = _ask(live_daphne, users, gpt_oss, LIMIT_QUESTION)
    steps = _steps(events)
    assert [s["output"] for s in steps[:8]] == [f"{n}\n" for n in range(1, 9)]
    assert steps[8]["status"] == "limit" and steps[8]["limit"] == "steps" and "output" not in steps[8]
    assert len(steps) == 9
    end = events[-1]
    assert (end["type"], end["finish_reason"], end["notice"]) == ("done", "length", "tool_limit")
    answer = Message.objects.get(conversation=conv, role="assistant")
    assert answer.finish_reason == "length" and len(answer.tool_steps) == 9
    # the refused ninth is not counted
    wait_for(lambda: UsageDay.objects.filter(user=users.alice, tool_calls=8).exists(), 10, "the calls counted")


def _stored_while_it_runs(conv) -> None:
    """The worker's progress saves hold the running step: a worker killed now leaves it
    stored with the rest (the reaper then fails the answer, keeping what is stored)."""

    def stored():
        answer = Message.objects.filter(conversation=conv, role="assistant").first()
        return answer is not None and [s["status"] for s in answer.tool_steps] == ["running"]

    wait_for(stored, 10, "the running step saved")


def test_stop_during_a_python_call_ends_the_call_and_the_answer(live_daphne, users, gpt_oss):
    started = time.monotonic()
    conv, events = _ask(
        live_daphne,
        users,
        gpt_oss,
        SLEEP_QUESTION,
        stop_when=lambda e: e["type"] == "delta" and e.get("step", {}).get("status") == "running",
        before_stop=_stored_while_it_runs,
    )
    end = events[-1]
    assert (end["type"], end["status"], end["finish_reason"]) == ("done", "stopped", "abort")
    step = _steps(events)[-1]
    assert step["status"] == "stopped" and step["stopped_by"] == "cancelled"
    assert time.monotonic() - started < 50  # the sleep was a minute: it did not run out
    answer = Message.objects.get(conversation=conv, role="assistant")
    assert answer.status == "stopped" and answer.tool_steps[-1]["status"] == "stopped"
    assert "Slept." not in answer.content
