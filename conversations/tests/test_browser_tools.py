"""Built-in tools in a real browser: the toggles, each step shown as it runs and folded
when the answer is done, the citation linked to its page, stop during a python call,
and steps made of hostile text staying text."""

from __future__ import annotations

import time

import pytest

from accounts.models import SiteSettings
from chatweb.testing.workers import SLEEP_QUESTION, TOOLS_CODE, TOOLS_QUESTION
from conversations.models import Conversation, Message
from conversations.tests.test_browser_chat import XSS, accept_the_refused_payload, assert_inert, signed_in_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def _enable_tools():
    site = SiteSettings.load()
    site.browser_tool_enabled = site.python_tool_enabled = True
    site.save()


def test_a_new_chat_with_tools_shows_each_step_and_links_its_citation(
    live_daphne, new_page, users, gpt_oss, web_stand_ins
):
    site, _engine = web_stand_ins
    _enable_tools()
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.goto(f"{live_daphne.url}/")
    page.select_option("#model", gpt_oss.name)
    page.get_by_test_id("tool-browser").check()
    page.get_by_test_id("tool-python").check()
    page.get_by_test_id("params").locator("summary").click()
    page.fill("input[name=max_tokens]", "400")  # the whole loop's tokens: the model's default is short
    page.fill("[data-testid=prompt]", TOOLS_QUESTION)
    page.keyboard.press("Enter")
    answer = page.locator(".message.assistant")
    answer.locator(".status", has_text="Done").wait_for(timeout=180_000)

    conversation = Conversation.objects.get(owner=users.alice)
    assert conversation.builtin_tools == ["browser", "python"]  # the toggles went with the first message
    steps = answer.get_by_test_id("step")
    assert steps.count() == 3
    headlines = answer.get_by_test_id("step-headline").all_inner_texts()
    assert headlines[0].startswith("Searched for “history of tea”")
    assert headlines[1].startswith("Read Tea & its history")
    assert headlines[2].startswith("Ran python")
    assert all(" s" in h for h in headlines)  # each with its duration
    assert steps.evaluate_all("els => els.map(e => e.open)") == [False, False, False]  # folded once done
    steps.nth(2).locator("summary").click()
    assert steps.nth(2).get_by_test_id("step-code").inner_text() == TOOLS_CODE
    assert steps.nth(2).get_by_test_id("step-output").inner_text().strip() == "42"

    citation = answer.get_by_test_id("citation")
    assert citation.count() == 1
    assert citation.get_attribute("href") == site.base + "/tea"
    assert citation.get_attribute("target") == "_blank"
    assert citation.get_attribute("rel") == "noopener noreferrer"
    assert "【" not in answer.get_by_test_id("content").inner_text()

    # the same, drawn again from what was stored
    page.reload()
    answer = page.locator(".message.assistant")
    answer.locator(".status", has_text="Done").wait_for()
    assert answer.get_by_test_id("step").count() == 3
    assert answer.get_by_test_id("citation").get_attribute("href") == site.base + "/tea"
    assert page.get_by_test_id("tool-browser").is_checked() and page.get_by_test_id("tool-python").is_checked()


def test_stop_during_a_python_step(live_daphne, new_page, users, gpt_oss):
    _enable_tools()
    conversation = Conversation.objects.create(
        owner=users.alice, model=gpt_oss, title="t", title_auto=False, params={"max_tokens": 400}
    )
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    page.get_by_test_id("tool-python").check()  # an existing chat saves the toggle at once
    for _ in range(50):
        conversation.refresh_from_db()
        if conversation.builtin_tools == ["python"]:
            break
        time.sleep(0.1)
    assert conversation.builtin_tools == ["python"]
    page.fill("[data-testid=prompt]", SLEEP_QUESTION)
    page.keyboard.press("Enter")
    step = page.locator(".message.assistant").get_by_test_id("step")
    step.and_(page.locator("[data-status=running]")).wait_for(timeout=180_000)
    assert step.get_attribute("open") is not None  # open while it runs
    assert step.locator("summary").inner_text().startswith("Running python")
    started = time.monotonic()
    page.get_by_test_id("stop").click()
    page.locator(".message.assistant .status", has_text="Stopped").wait_for(timeout=30_000)
    assert time.monotonic() - started < 20  # the call would have slept a minute
    assert step.get_attribute("data-status") == "stopped"
    assert "stopped" in step.locator("summary").inner_text()
    answer = Message.objects.get(conversation=conversation, role="assistant")
    assert answer.status == "stopped" and answer.tool_steps[-1]["status"] == "stopped"


def test_hostile_steps_stay_text(live_daphne, new_page, users, fake_worker):
    """Every field of a step came from the model, a page or the sandbox: the XSS list in
    each, and a citation naming a page whose address is javascript:."""
    hostile = "\n".join(XSS)
    conversation = Conversation.objects.create(owner=users.alice, model=fake_worker)
    question = Message.objects.create(conversation=conversation, role="user", content="Look it up.")
    steps = [
        {
            "id": "step_1",
            "tool": "browser.search",
            "kind": "search",
            "status": "done",
            "query": hostile,
            "title": hostile,
        },
        {
            "id": "step_2",
            "tool": "browser.open",
            "kind": "open",
            "status": "done",
            "title": hostile,
            "url": "javascript:alert(1)",
            "cursor": 1,
        },
        {"id": "step_3", "tool": "python", "kind": "python", "status": "failed", "code": hostile, "output": hostile},
        {"id": "step_4", "tool": hostile, "kind": hostile, "status": hostile, "error": hostile, "seconds": "<b>1</b>"},
        {"id": "step_5", "tool": "python", "kind": "python", "status": "running", "code": "while True: pass"},
    ]
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="done",
        content="It says so 【1†L2】.\n\n" + "\n\n".join(XSS),
        tool_steps=steps,
    )
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    answer = page.locator(".message.assistant")
    answer.get_by_test_id("step").first.wait_for()
    for details in answer.get_by_test_id("step").all():
        details.locator("summary").click()
    page.wait_for_timeout(300)
    assert_inert(page)
    assert answer.get_by_test_id("citation").count() == 0  # a javascript: page is no link
    assert "【1†L2】" in answer.get_by_test_id("content").inner_text()
    assert answer.get_by_test_id("step-code").first.inner_text() == hostile  # shown as text, whole
    # a step stored while it ran (its worker lost) is no longer shown as running
    last = answer.get_by_test_id("step").last
    assert last.get_attribute("data-status") == "interrupted"
    assert last.locator("summary").inner_text() == "Ran python · interrupted"
    accept_the_refused_payload(new_page)
