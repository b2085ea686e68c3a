"""The Content-Security-Policy in chromium: the pages and the admin work under it, and an
injected script does not run. (new_page fails any browser test whose pages report a violation.)"""

from __future__ import annotations

import pytest
from django.conf import settings

from accounts.models import SiteSettings
from conftest import session_cookie
from conversations.models import Conversation, Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INJECT = """() => new Promise((resolve) => {
    const script = document.createElement("script");
    script.textContent = "window.injected = 'script'";
    document.body.append(script);
    const image = document.createElement("img");
    image.setAttribute("onerror", "window.injected = 'handler'");
    // runs after the handler attribute's code, which was registered first
    image.addEventListener("error", () => resolve(window.injected ?? null));
    image.src = "/static/none.png";
    document.body.append(image);
})"""


def signed_in(new_page, base: str, user):
    page = new_page()
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(user), "url": base}])
    return page


def test_the_pages_and_the_admin_work_under_the_policy(live_daphne, new_page, users):
    base = live_daphne.url
    site = SiteSettings.load()
    site.admins_read_conversations = True
    site.save()
    conversation = Conversation.objects.create(owner=users.alice, title="a title", system_prompt="be brief")
    Message.objects.create(conversation=conversation, role="user", content="hello\n  indented")

    alice = signed_in(new_page, base, users.alice)
    alice.goto(f"{base}/c/{conversation.pk}/")
    alice.get_by_test_id("conversation-list").get_by_text("a title").wait_for()  # chat.js ran
    alice.get_by_test_id("messages").get_by_text("hello").wait_for()  # its websocket's sync came in
    alice.goto(f"{base}/accounts/keys/")
    alice.get_by_test_id("key-name").fill("laptop")
    alice.get_by_test_id("key-create").click()
    alice.get_by_test_id("new-key-value").wait_for()

    admin = signed_in(new_page, base, users.admin)
    admin.goto(f"{base}/admin/")
    admin.goto(f"{base}/admin/accounts/user/?status=pending")
    admin.goto(f"{base}/admin/accounts/user/{users.alice.pk}/change/")
    admin.locator("input[name=_continue]").click()
    admin.wait_for_load_state()
    assert admin.locator(".messagelist .success").is_visible()
    admin.goto(f"{base}/admin/conversations/conversation/{conversation.pk}/change/")
    message = admin.get_by_test_id("admin-message")
    assert message.inner_text() == "hello\n  indented"
    assert message.evaluate("(node) => getComputedStyle(node).whiteSpace") == "pre-wrap"  # its stylesheet


def test_an_injected_script_or_handler_does_not_run(live_daphne, new_page, users):
    page = signed_in(new_page, live_daphne.url, users.alice)
    page.goto(f"{live_daphne.url}/")
    page.get_by_test_id("chat").wait_for()
    assert page.evaluate(INJECT) is None
    page.evaluate("() => 0")  # the console messages of the refusals reach the test first
    refused = list(new_page.csp_violations)
    new_page.csp_violations.clear()  # provoked here on purpose
    assert any("script-src" in line and "inline" in line for line in refused), refused
