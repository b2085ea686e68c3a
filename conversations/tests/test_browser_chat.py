"""Chatting in a real browser: live daphne, real worker, real engine."""

from __future__ import annotations

import pytest

from conftest import screenshot, session_cookie
from conversations.models import Conversation, Message

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

XSS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIG9ubG9hZD0iYWxlcnQoMSkiLz4=)",
    '<a href="javascript:alert(1)">link</a>',
    '<iframe src="https://example.org"></iframe>',
    "```html\n<script>alert(1)</script>\n```",
]


def signed_in_page(new_page, live_daphne, user):
    page = new_page()
    page.context.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": live_daphne.url}])
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    return page


def test_chat_streams_an_answer_and_keeps_the_history(live_daphne, new_page, users, smollm2):
    page = signed_in_page(new_page, live_daphne, users.alice)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    page.goto(f"{live_daphne.url}/")
    page.select_option("#model", "smollm2-test")
    page.fill("[data-testid=prompt]", "What is the capital of France?")
    page.keyboard.press("Enter")
    answer = page.locator(".message.assistant [data-testid=content]")
    answer.get_by_text("The capital of France is Paris.").wait_for(timeout=120_000)
    page.locator(".message.assistant .status", has_text="Done").wait_for()
    assert sum('"type": "delta"' in f for f in frames) >= 2, "the answer arrived in several pieces"
    assert page.url.startswith(f"{live_daphne.url}/c/")
    screenshot(page, "chat-page")

    page.reload()
    page.locator(".message.assistant").first.wait_for()
    assert page.locator(".message.user [data-testid=content]").inner_text() == "What is the capital of France?"
    assert page.locator(".message.assistant [data-testid=content]").inner_text() == "The capital of France is Paris."
    conversation = Conversation.objects.get(owner=users.alice)
    assert [m.role for m in Message.objects.filter(conversation=conversation)] == ["user", "assistant"]
    assert page.dialogs == []


def test_hostile_markdown_stays_inert(live_daphne, new_page, users, smollm2):
    conversation = Conversation.objects.create(owner=users.alice, model=smollm2)
    question = Message.objects.create(conversation=conversation, role="user", content="\n\n".join(XSS))
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="done", content="\n\n".join(XSS)
    )
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    page.locator(".message.assistant").wait_for()
    page.wait_for_timeout(500)
    pane = page.locator("[data-testid=messages]")
    html = pane.inner_html()
    assert page.dialogs == []
    assert pane.locator("script, iframe, object, embed").count() == 0
    assert pane.locator("[onerror], [onload]").count() == 0
    for href in pane.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))"):
        assert href is None or not href.lower().startswith(("javascript:", "data:"))
    for src in pane.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src'))"):
        assert src is None or not src.lower().startswith(("javascript:", "data:"))
    # the fenced HTML is shown as code, not run
    assert "<script>alert(1)</script>" in pane.locator("pre code").first.inner_text()
    assert "<script" not in html.replace("&lt;script", "")
