"""The account pages on a phone's screen and in a dark system theme, in a real browser."""

from __future__ import annotations

import pytest

from accounts.models import Role, User
from accounts.services import api_key_create
from conftest import PHONE, assert_fits_the_screen, assert_in_view, is_dark, screenshot, session_cookie

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_EMAIL = "someone-with-a-rather-long-address-for-a-phone@subdomain.example.com"


def signed_in(new_page, live_daphne, user, **options):
    page = new_page(**options)
    page.context.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": live_daphne.url}])
    return page


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_api_keys_page_fits_a_phone(live_daphne, new_page, users, scheme):
    api_key_create(user=users.alice, name="laptop scripts that run every night", save_history=True)
    api_key_create(user=users.alice, name="phone")
    page = signed_in(new_page, live_daphne, users.alice, **PHONE, color_scheme=scheme)
    page.goto(f"{live_daphne.url}/accounts/keys/")
    screenshot(page, f"phone-api-keys-{scheme}")
    assert_fits_the_screen(page)
    assert page.get_by_test_id("key-row").count() == 2
    first = page.get_by_test_id("key-row").first
    assert_in_view(first)  # a whole key, its lines labelled, on the screen
    labels = first.evaluate("row => [...row.cells].map(c => getComputedStyle(c, '::before').content)")
    assert '"Last used"' in labels, labels
    page.get_by_test_id("key-name").fill("from a phone")
    assert_in_view(page.get_by_test_id("key-create"))
    page.get_by_test_id("key-create").click()
    page.get_by_test_id("new-key-value").wait_for()
    assert_fits_the_screen(page)
    assert is_dark(page, "body") == (scheme == "dark")
    assert is_dark(page, "[data-testid=api-keys]") == (scheme == "dark")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_pending_page_fits_a_phone(live_daphne, new_page, db, scheme):
    User.objects.create_user("admin@example.com", "x-long-enough-password-1")  # the first account is the admin
    waiting = User.objects.create_user(LONG_EMAIL, "x-long-enough-password-1", role=Role.PENDING)
    page = signed_in(new_page, live_daphne, waiting, **PHONE, color_scheme=scheme)
    page.goto(f"{live_daphne.url}/accounts/pending/")
    screenshot(page, f"phone-pending-{scheme}")
    assert page.get_by_test_id("pending").is_visible()
    assert_fits_the_screen(page)
    assert is_dark(page, "body") == (scheme == "dark")
    assert is_dark(page, "[data-testid=pending]") == (scheme == "dark")
