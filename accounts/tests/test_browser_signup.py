"""The approval flow in a real browser against a live daphne."""

from __future__ import annotations

import pytest

from accounts.models import Role, User
from conftest import PASSWORD, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WS_CLOSE_CODE = """(path) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}${path}`);
    ws.onclose = (event) => resolve(event.code);
})"""


def sign_up(page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]:has-text('Sign Up')")
    page.wait_for_load_state()


def test_first_signup_is_admin_second_waits_until_approved(live_daphne, new_page):
    base = live_daphne.url
    admin_page = new_page()
    sign_up(admin_page, base, "founder@example.com")
    assert admin_page.get_by_test_id("chat").is_visible()
    assert "admin" in admin_page.get_by_test_id("who").inner_text()
    assert User.objects.get(email="founder@example.com").role == Role.ADMIN

    user_page = new_page()
    sign_up(user_page, base, "newcomer@example.com")
    assert user_page.get_by_test_id("pending").is_visible()
    user_page.goto(f"{base}/")
    assert user_page.url.endswith("/accounts/pending/")
    assert user_page.get_by_test_id("chat").count() == 0
    assert user_page.evaluate(WS_CLOSE_CODE, "/ws/chat/1/") == 4003
    api = user_page.evaluate("async () => { const r = await fetch('/api/models'); return [r.status, await r.json()]; }")
    assert api[0] == 403 and api[1]["error"]["code"] == "account_pending"

    admin_page.goto(f"{base}/admin/accounts/user/?status=pending")
    row = admin_page.locator("#result_list tbody tr", has_text="newcomer@example.com")
    assert "awaiting approval" in row.inner_text()
    row.locator("input[name=_selected_action]").check()
    admin_page.select_option("select[name=action]", "approve")
    admin_page.click("button[name=index]")
    admin_page.wait_for_load_state()
    assert "Approved 1 user." in admin_page.content()
    admin_page.goto(f"{base}/admin/accounts/user/")
    screenshot(admin_page, "admin-user-list")

    user_page.goto(f"{base}/")
    assert user_page.get_by_test_id("chat").is_visible()
    assert User.objects.get(email="newcomer@example.com").role == Role.USER
    screenshot(user_page, "chat-page-approved-user")
