"""The whole day of a new user, in a real browser against a live daphne, the real worker and model.

Sign up, wait, get approved by the admin, chat, reload, stop, regenerate, edit and
resend, switch branches, set parameters, rename, search, export, delete. Every step
checks what the person sees and what is stored; no script may run on the way. The
day is walked on a desktop's screen and on a phone's, where the conversations are a drawer.
"""

from __future__ import annotations

import json
import re

import pytest

from accounts.tests.test_browser_signup import sign_up
from conftest import DESKTOP, PHONE, assert_fits_the_screen, assert_in_view, screenshot
from conversations.models import Conversation, Message
from conversations.tests.test_browser_phone import open_drawer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]

FRANCE = "What is the capital of France?"
LONG = "Write a very long story about a dragon who learns to bake bread. Use many chapters."
HOSTILE_TITLE = "Geography <img src=x onerror=alert(1)>"


def watch(page) -> dict[str, list[str]]:
    """Record dialogs (confirm is accepted, anything else is a defect) and uncaught page errors."""
    seen: dict[str, list[str]] = {"alerts": [], "confirms": [], "errors": []}

    def on_dialog(dialog):
        if dialog.type == "confirm":
            seen["confirms"].append(dialog.message)
            dialog.accept()
        else:
            seen["alerts"].append(dialog.message)
            dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    return seen


def answers(page):
    return page.locator("[data-testid=messages] .message.assistant")


def wait_done(page, index: int = -1, timeout: float = 180_000):
    answer = answers(page).nth(index) if index >= 0 else answers(page).last
    answer.locator(".status", has_text=re.compile(r"^(Done|Stopped)")).wait_for(timeout=timeout)
    return answer


def show_conversations(page, phone: bool) -> None:
    """On a phone the conversations are in a drawer: open it (the chat behind is out of reach then)."""
    if phone and page.get_by_test_id("drawer-toggle").get_attribute("aria-expanded") != "true":
        open_drawer(page)


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_a_new_user_walks_through_the_chat(live_daphne, new_page, smollm2, screen):
    base = live_daphne.url
    phone = screen == "phone"
    shot = "" if screen == "desktop" else f"-{screen}"
    admin = new_page()
    sign_up(admin, base, "founder@example.com")
    page = new_page(**(PHONE if phone else DESKTOP))
    seen = watch(page)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    sign_up(page, base, "newcomer@example.com")
    assert page.get_by_test_id("pending").is_visible()
    assert_fits_the_screen(page)

    # the admin approves the newcomer from the user list
    admin.goto(f"{base}/admin/accounts/user/?status=pending")
    row = admin.locator("#result_list tbody tr", has_text="newcomer@example.com")
    row.locator("input[name=_selected_action]").check()
    admin.select_option("select[name=action]", "approve")
    admin.click("button[name=index]")
    admin.wait_for_load_state()
    admin.goto(f"{base}/admin/accounts/user/")
    screenshot(admin, "admin-user-list")

    # start a chat: the answer arrives in several pieces and the status bar fills in
    page.goto(f"{base}/")
    assert page.get_by_test_id("chat").is_visible()
    page.select_option("#model", "smollm2-test")
    page.fill("[data-testid=prompt]", FRANCE)
    if phone:
        assert_in_view(page.get_by_test_id("send"))
    page.get_by_test_id("send").click()
    wait_done(page)
    assert answers(page).last.get_by_test_id("content").inner_text() == "The capital of France is Paris."
    assert sum('"type": "delta"' in f for f in frames) >= 2, "the answer arrived in several pieces"
    conversation = Conversation.objects.get(owner__email="newcomer@example.com")
    assert page.url == f"{base}/c/{conversation.pk}/"
    assert page.get_by_test_id("conversation").first.get_attribute("data-id") == str(conversation.pk)
    assert re.search(r"Tokens in \d+ · out \d+", page.get_by_test_id("tokens").inner_text())
    assert re.search(r"first token \d+ ms", page.get_by_test_id("speed").inner_text())
    assert "SmolLM2" in page.get_by_test_id("model-state").inner_text()
    assert_fits_the_screen(page)
    screenshot(page, f"chat-page{shot}")

    # reload: the history is there
    page.reload()
    answers(page).first.wait_for()
    assert page.locator(".message.user [data-testid=content]").inner_text() == FRANCE
    assert answers(page).inner_text().startswith("The capital of France is Paris.")

    # parameters: more room for a long answer (64 by default), kept for this conversation;
    # room for a few seconds of answer here (400 took 22 s to regenerate below)
    page.locator("#params summary").click()
    page.fill("input[name=max_tokens]", "120")
    page.get_by_test_id("params-save").click()
    page.get_by_test_id("params-note").get_by_text("Saved for this conversation.").wait_for()
    conversation.refresh_from_db()
    assert conversation.params == {"max_tokens": 120}

    # stop an answer mid-way: the partial text stays, on screen and stored alike
    page.fill("[data-testid=prompt]", LONG)
    page.keyboard.press("Enter")
    long_answer = answers(page).nth(1)
    long_answer.get_by_test_id("content").locator("p").first.wait_for(timeout=120_000)
    page.get_by_test_id("stop").click()
    long_answer.locator(".status", has_text="Stopped.").wait_for(timeout=30_000)
    stopped = Message.objects.filter(conversation=conversation, role="assistant").order_by("-pk").first()
    assert stopped.status == "stopped" and 0 < stopped.completion_tokens < 120
    shown = long_answer.get_by_test_id("content").inner_text().strip()
    assert shown and shown.split()[:3] == stopped.content.split()[:3]

    # regenerate it: a second version, and the first one is a click away
    long_answer.get_by_test_id("regenerate").click()
    answers(page).nth(1).locator(".status", has_text=re.compile("^Done")).wait_for(timeout=180_000)
    switch = answers(page).nth(1).get_by_test_id("siblings")
    assert switch.inner_text().replace("\n", " ").split()[1] == "2/2"
    switch.get_by_title("Previous version").click()
    assert answers(page).nth(1).get_by_test_id("siblings").get_by_text("1/2").is_visible()
    assert answers(page).nth(1).locator(".status").inner_text() == "Stopped."
    assert Message.objects.filter(parent=stopped.parent).count() == 2

    # edit the first question and resend: a new branch, the old one kept
    first_question = page.locator(".message.user").first
    first_question.get_by_test_id("edit").click()
    page.get_by_test_id("edit-input").fill("What is the capital of Germany?")
    page.get_by_test_id("edit-send").click()
    page.locator(".message.user").first.get_by_test_id("siblings").get_by_text("2/2").wait_for()
    wait_done(page, 0)
    assert page.locator(".message.user").count() == 1  # the edited branch has one exchange so far
    edited = page.locator(".message.user").first.get_by_test_id("content")
    assert edited.inner_text() == "What is the capital of Germany?"
    assert Message.objects.filter(conversation=conversation, parent=None).count() == 2
    assert_fits_the_screen(page)
    screenshot(page, f"chat-branches{shot}")

    # export what is on screen
    with page.expect_download() as download:
        page.get_by_test_id("export-json").click()
    exported = json.loads(open(download.value.path()).read())
    assert {m["content"] for m in exported["messages"]} >= {FRANCE, "What is the capital of Germany?"}

    # rename, with markup in the new name: shown as text, nothing runs
    show_conversations(page, phone)
    item = page.locator(f"[data-testid=conversation][data-id='{conversation.pk}']")
    item.hover()
    item.get_by_test_id("rename").click()
    page.get_by_test_id("rename-input").fill(HOSTILE_TITLE)
    page.get_by_test_id("rename-input").press("Enter")
    item.locator("a", has_text="Geography").wait_for()
    assert item.locator("a").inner_text() == HOSTILE_TITLE
    assert page.get_by_test_id("title").inner_text() == HOSTILE_TITLE
    assert page.locator("[data-testid=sidebar] img, [data-testid=title] img").count() == 0
    conversation.refresh_from_db()
    assert conversation.title == HOSTILE_TITLE and not conversation.title_auto

    # a second chat whose first message is hostile markup: its title is inert too
    page.get_by_test_id("new-chat").click()
    page.wait_for_load_state()
    page.fill("[data-testid=prompt]", "<script>alert(1)</script><img src=x onerror=alert(2)> hello")
    page.keyboard.press("Enter")
    wait_done(page)
    assert page.get_by_test_id("conversation").count() == 2
    assert page.locator("[data-testid=sidebar] img, [data-testid=sidebar] script").count() == 0
    assert page.locator("[data-testid=messages] img, [data-testid=messages] script").count() == 0
    shown = page.locator(".message.user [data-testid=content]").inner_text()
    assert shown == "<script>alert(1)</script><img src=x onerror=alert(2)> hello"  # as typed

    # search: message text finds the first chat, nonsense finds nothing
    show_conversations(page, phone)
    page.get_by_test_id("search").fill("Germany")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=conversation]').length === 1")
    assert page.get_by_test_id("conversation").get_attribute("data-id") == str(conversation.pk)
    page.get_by_test_id("search").fill("no such words anywhere")
    page.get_by_test_id("conversation-list").get_by_text("Nothing matches.").wait_for()
    page.get_by_test_id("search").fill("")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=conversation]').length === 2")

    # delete, after confirming
    item = page.locator(f"[data-testid=conversation][data-id='{conversation.pk}']")
    item.hover()
    item.get_by_test_id("delete").click()
    item.wait_for(state="detached")
    assert seen["confirms"] and "Delete" in seen["confirms"][0]
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()

    if phone:
        page.keyboard.press("Escape")
        page.get_by_test_id("sidebar").wait_for(state="hidden")
        assert page.get_by_test_id("drawer-toggle").get_attribute("aria-expanded") == "false"
        assert_in_view(page.get_by_test_id("send"))
    assert_fits_the_screen(page)
    assert seen["alerts"] == [], "no script from any message or title ran"
    assert seen["errors"] == [], seen["errors"]
