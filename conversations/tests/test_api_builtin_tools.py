"""The Responses API's built-in tools, run server-side with the official client: `web_search`
(gpt-oss's browser, against the stand-in search engine and site of chatweb/testing/web.py)
and `code_interpreter` (python in bubblewrap, an automatic container per response), each as
OpenAI's output items and stream events; refused by name where they cannot be honoured."""

from __future__ import annotations

import os

import pytest

from accounts.models import ApiKey, SiteSettings, UsageDay
from chatweb.testing.workers import TOOLS_ANSWER, TOOLS_CODE, TOOLS_QUESTION
from conftest import ensure_model_row, wait_for
from conversations.models import StoredResponse
from conversations.tests.test_api_chat import client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

CODE = "code_interpreter"
TOOLS = [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]


def _enable():
    site = SiteSettings.load()
    site.browser_tool_enabled = site.python_tool_enabled = True
    site.save()


def _kinds(output) -> list[str]:
    return [item.type for item in output if item.type != "reasoning"]


def test_web_search_and_code_interpreter_run_server_side(live_daphne, users, gpt_oss, key, web_stand_ins, sandbox_root):
    site, engine = web_stand_ins
    _enable()
    response = client(live_daphne, key).responses.create(
        model="gpt-oss-test",
        input=TOOLS_QUESTION,
        tools=TOOLS,
        include=["code_interpreter_call.outputs"],
        max_output_tokens=400,
    )
    assert response.status == "completed"
    assert _kinds(response.output) == ["web_search_call", "web_search_call", "code_interpreter_call", "message"]
    search, opened, code, message = (item for item in response.output if item.type != "reasoning")
    assert (search.status, search.action.type, search.action.query) == ("completed", "search", "history of tea")
    assert (opened.action.type, opened.action.url) == ("open_page", site.base + "/tea")
    assert (code.status, code.code) == ("completed", TOOLS_CODE)
    assert [(o.type, o.logs) for o in code.outputs] == [("logs", "42\n")]
    assert code.container_id == f"cntr_{response.id.removeprefix('resp_')}"
    assert response.output_text == TOOLS_ANSWER
    (citation,) = message.content[0].annotations
    assert citation.type == "url_citation" and citation.url == site.base + "/tea"
    assert TOOLS_ANSWER[citation.start_index : citation.end_index] == "【1†L2】"
    assert citation.title == "Tea & its history"
    assert response.output[0].type == "reasoning"  # reasoning first, and again between the calls
    assert any(r["path"].startswith("/search?q=history+of+tea") for r in engine.requests)
    # the automatic container lives as long as the response (its worker removes it as the answer ends)
    wait_for(lambda: not any(n.startswith("r") for n in os.listdir(sandbox_root)), 10, "the container removed")
    assert response.usage.output_tokens > 40  # every step's tokens
    used = lambda: UsageDay.objects.filter(user=users.alice, completion_tokens=response.usage.output_tokens)  # noqa: E731
    wait_for(lambda: used().exists(), 10, "the usage counted")

    kept = client(live_daphne, key).responses.retrieve(response.id)
    assert _kinds(kept.output) == _kinds(response.output)
    assert next(i for i in kept.output if i.type == "code_interpreter_call").outputs is None  # not asked for


def test_a_stream_says_each_call_as_openai_does(live_daphne, users, gpt_oss, key, web_stand_ins):
    _enable()
    stream = client(live_daphne, key).responses.create(
        model="gpt-oss-test", input=TOOLS_QUESTION, tools=TOOLS, max_output_tokens=400, stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    for kind in (
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
    ):
        assert kind in kinds, kind
    assert kinds.count("response.web_search_call.completed") == 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    code = next(e for e in events if e.type == "response.code_interpreter_call_code.done")
    assert code.code == TOOLS_CODE
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.type for i in done if i.type != "reasoning"] == [
        "web_search_call", "web_search_call", "code_interpreter_call", "message"
    ]  # fmt: skip
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    assert added == list(range(len(added)))  # each item once, in order
    final = events[-1]
    assert final.type == "response.completed" and final.response.output_text == TOOLS_ANSWER
    assert final.response.output[-1].content[0].annotations[0].url.endswith("/tea")


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "code_interpreter", "container": "cntr_abc"}, "tools.0.container"),
        ({"type": CODE, "container": {"type": "auto", "file_ids": ["file_1"]}}, "tools.0.container.file_ids"),
        ({"type": CODE, "container": {"type": "auto", "memory_limit": "4g"}}, "tools.0.container.memory_limit"),
        ({"type": "web_search", "filters": {"allowed_domains": ["example.org"]}}, "tools.0.filters"),
        ({"type": "web_search", "user_location": {"type": "approximate", "city": "Taipei"}}, "tools.0.user_location"),
        ({"type": "web_search", "search_context_size": "high"}, "tools.0.search_context_size"),
        ({"type": "web_search_preview"}, "tools.0.type"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_refused_by_name(asgi_api, users, key, tool, param):
    _enable()
    ensure_model_row("gpt-oss-test")
    response = asgi_api.post("/api/responses", key=key, json={"model": "gpt-oss-test", "input": "Hi", "tools": [tool]})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param, response.json()
    assert not ApiKey.objects.filter(requests__gt=0).exists() and not StoredResponse.objects.exists()


def test_a_tool_the_admin_has_not_enabled_is_refused(asgi_api, users, key):
    row = ensure_model_row("gpt-oss-test")
    body = {"model": "gpt-oss-test", "input": "Hi", "tools": TOOLS}
    off = asgi_api.post("/api/responses", key=key, json=body)
    assert off.status_code == 403 and off.json()["error"]["code"] == "tool_not_enabled"
    assert off.json()["error"]["param"] == "tools.0.type" and "web_search" in off.json()["error"]["message"]
    site = SiteSettings.load()
    site.browser_tool_enabled = True
    site.save()
    row.allow_python = False
    row.save()
    python_off = asgi_api.post("/api/responses", key=key, json=body)
    assert python_off.status_code == 403 and python_off.json()["error"]["param"] == "tools.1.type"
    assert not ApiKey.objects.filter(requests__gt=0).exists() and not StoredResponse.objects.exists()


def test_chat_completions_stay_function_only(asgi_api, users, key):
    _enable()
    ensure_model_row("gpt-oss-test")
    body = {"model": "gpt-oss-test", "messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "web_search"}]}
    response = asgi_api.post("/api/chat/completions", key=key, json=body)
    assert response.status_code == 400 and response.json()["error"]["param"].startswith("tools.0")
