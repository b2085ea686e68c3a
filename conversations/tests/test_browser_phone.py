"""The chat on a phone's screen, in a real browser against a live daphne (no worker needed).

The sidebar is a drawer there, the composer stays in view however long the
conversation, nothing makes the page scroll sideways, and a dark system theme is followed.
"""

from __future__ import annotations

import pytest

from conftest import (
    DESKTOP,
    PHONE,
    assert_fits_the_screen,
    assert_in_view,
    is_dark,
    is_light,
    screenshot,
    session_cookie,
)
from conversations.models import Conversation, Message
from inference_worker.models import ChatModel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_LINE = "x = " + " + ".join(f"value_{i}" for i in range(40))
LONG_WORD = "https://example.org/" + "a" * 200


def long_conversation(owner) -> Conversation:
    """Enough messages to fill a phone's screen several times, with a long code line and a long word."""
    model = ChatModel.objects.create(name="offline", display_name="Offline model", path="/none", queue="offline")
    conversation = Conversation.objects.create(owner=owner, model=model, title="A long one", title_auto=False)
    parent = None
    for turn in range(6):
        question = Message.objects.create(
            conversation=conversation, parent=parent, role="user", content=f"Question {turn}: {LONG_WORD}"
        )
        answer = f"Answer {turn}.\n\n" + "A sentence of the answer. " * 20 + f"\n\n```python\n{LONG_LINE}\n```"
        parent = Message.objects.create(
            conversation=conversation, parent=question, role="assistant", status="done", content=answer
        )
    return conversation


def signed_in(new_page, live_daphne, user, **options):
    page = new_page(**options)
    page.context.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": live_daphne.url}])
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    return page


def open_drawer(page) -> None:
    """Open the conversations' drawer with its button, and wait until it has slid in."""
    page.get_by_test_id("drawer-toggle").click()
    page.wait_for_function(
        "() => { const s = document.getElementById('sidebar');"
        " return s.getAnimations().length === 0 && s.getBoundingClientRect().left >= 0; }"
    )


def test_on_a_phone_the_composer_is_in_view_and_sends(live_daphne, new_page, users):
    conversation = long_conversation(users.alice)
    page = signed_in(new_page, live_daphne, users.alice, **PHONE)
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    page.locator(".message.assistant").last.wait_for()
    screenshot(page, "phone-chat")

    assert_fits_the_screen(page)
    assert_in_view(page.get_by_test_id("prompt"))
    assert_in_view(page.get_by_test_id("send"))
    assert page.get_by_test_id("title").is_visible()
    # the conversation itself is on screen, not pushed aside by the sidebar
    assert_in_view(page.locator(".message.assistant").last.get_by_test_id("status"))

    # Send is clicked, not Enter pressed: the model has no worker, and the page says so
    page.fill("[data-testid=prompt]", "Hello from a phone")
    page.get_by_test_id("send").click()
    page.get_by_test_id("notice").get_by_text("No worker is serving Offline model").wait_for()
    assert_in_view(page.get_by_test_id("notice"))
    assert_fits_the_screen(page)
    assert page.errors == []


def test_on_a_phone_the_conversations_are_a_drawer(live_daphne, new_page, users):
    conversation = long_conversation(users.alice)
    page = signed_in(new_page, live_daphne, users.alice, **PHONE)
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    toggle = page.get_by_test_id("drawer-toggle")
    sidebar = page.get_by_test_id("sidebar")
    item = page.locator(f"[data-testid=conversation][data-id='{conversation.pk}']")

    assert not sidebar.is_visible()
    assert toggle.get_attribute("aria-expanded") == "false"
    assert toggle.get_attribute("aria-controls") == sidebar.get_attribute("id")

    # opened by its button, closed by Escape: the focus goes back to the button
    open_drawer(page)
    assert toggle.get_attribute("aria-expanded") == "true"
    assert_in_view(item.locator("a"))
    assert_in_view(page.get_by_test_id("new-chat"))
    assert_fits_the_screen(page)
    screenshot(page, "phone-drawer")
    page.keyboard.press("Escape")
    sidebar.wait_for(state="hidden")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.dataset.testid") == "drawer-toggle"

    # closed by its close button, and by a tap beside it
    open_drawer(page)
    page.get_by_test_id("drawer-close").click()
    sidebar.wait_for(state="hidden")
    assert toggle.get_attribute("aria-expanded") == "false"
    open_drawer(page)
    page.mouse.click(page.viewport_size["width"] - 10, page.viewport_size["height"] // 2)
    sidebar.wait_for(state="hidden")

    # what the sidebar does works in the drawer: rename (its Escape cancels only the rename)
    open_drawer(page)
    item.get_by_test_id("rename").click()
    page.get_by_test_id("rename-input").press("Escape")
    assert sidebar.is_visible() and toggle.get_attribute("aria-expanded") == "true"
    item.get_by_test_id("rename").click()
    page.get_by_test_id("rename-input").fill("Renamed on a phone")
    page.get_by_test_id("rename-input").press("Enter")
    page.get_by_test_id("title").get_by_text("Renamed on a phone").wait_for()
    conversation.refresh_from_db()
    assert conversation.title == "Renamed on a phone"
    page.get_by_test_id("new-chat").click()
    page.wait_for_url(f"{live_daphne.url}/")
    assert not page.get_by_test_id("sidebar").is_visible()
    assert page.errors == []


def test_the_chat_follows_a_dark_system_theme(live_daphne, new_page, users):
    conversation = long_conversation(users.alice)
    for name, options in {"phone": PHONE, "desktop": DESKTOP}.items():
        page = signed_in(new_page, live_daphne, users.alice, **options, color_scheme="dark")
        page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
        page.locator(".message.assistant pre code").last.wait_for()
        screenshot(page, f"{name}-chat-dark")
        assert is_dark(page, "body") and is_dark(page, ".chat-main") and is_dark(page, ".message.assistant pre code")
        assert is_light(page, ".message.assistant [data-testid=content]", "color")
        assert is_dark(page, "[data-testid=prompt]")
        assert_fits_the_screen(page)
        if name == "phone":
            open_drawer(page)
            assert is_dark(page, "[data-testid=sidebar]")
            screenshot(page, "phone-drawer-dark")
        assert page.errors == []
