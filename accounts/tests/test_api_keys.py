"""API keys: shown once, stored as prefix + HMAC, named, expiring, revocable, owner-only, and
kept across a SECRET_KEY rotation."""

from __future__ import annotations

import datetime

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_find
from conversations.tests.conftest import AsgiApi

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_key_is_shown_once_and_only_its_prefix_and_hmac_are_kept(users):
    client = login(users.alice)
    page = client.post("/accounts/keys/", {"name": "laptop", "expires_days": "30"})
    assert page.status_code == 200
    key = page.context["created_key"]
    assert key.startswith("sk-cw-") and len(key) > 40
    row = ApiKey.objects.get(user=users.alice)
    assert row.name == "laptop" and key.startswith(row.prefix) and len(row.prefix) == 14
    assert key not in row.digest and row.digest != key and len(row.digest) == 64
    assert 29 <= (row.expires - timezone.now()).days <= 30
    assert api_key_find(key) == row
    assert api_key_find(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert api_key_find(row.prefix) is None
    listing = client.get("/accounts/keys/").content.decode()
    assert "laptop" in listing and row.prefix in listing and key not in listing


def test_bad_key_requests_change_nothing(users):
    client = login(users.alice)
    bad = [
        {"name": "", "expires_days": ""},
        {"name": "x" * 101, "expires_days": ""},
        {"name": "a", "expires_days": "3"},  # not one of the offered expiries
    ]
    for body in bad:
        response = client.post("/accounts/keys/", body)
        assert response.status_code == 400 and response.context["error"]
    assert not ApiKey.objects.exists()
    with pytest.raises(ValueError):
        api_key_create(user=users.alice, name="old", expires=timezone.now() - datetime.timedelta(days=1))


def test_revoke_is_immediate_and_only_for_the_owner(users):
    row, key = api_key_create(user=users.alice, name="ci")
    assert login(users.bob).post(f"/accounts/keys/{row.pk}/revoke").status_code == 404
    row.refresh_from_db()
    assert row.is_live
    login(users.alice).post(f"/accounts/keys/{row.pk}/revoke")
    row.refresh_from_db()
    assert row.revoked is not None and not row.is_live and row.state == "revoked"


def test_the_key_list_shows_my_keys_only(users):
    api_key_create(user=users.alice, name="alice-key")
    api_key_create(user=users.bob, name="bob-key")
    page = login(users.alice).get("/accounts/keys/").content.decode()
    assert "alice-key" in page and "bob-key" not in page
    assert login(users.charlie).get("/accounts/keys/").status_code == 302  # pending: the waiting page


def test_admins_see_and_revoke_any_key(users):
    row, _ = api_key_create(user=users.alice, name="alice-key")
    admin = login(users.admin)
    assert "alice-key" in admin.get("/admin/accounts/apikey/").content.decode()
    admin.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.state == "revoked"
    assert admin.get(f"/admin/accounts/apikey/{row.pk}/delete/").status_code == 403


def test_the_management_command_prints_a_working_key(users, capsys):
    call_command("create_api_key", users.alice.email, "--name", "cron", "--expires-days", "7")
    key = capsys.readouterr().out.strip()
    row = api_key_find(key)
    assert row is not None and row.user == users.alice and row.name == "cron"
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="pending"):
        call_command("create_api_key", users.charlie.email, "--name", "x")
    with pytest.raises(CommandError, match="No account"):
        call_command("create_api_key", "nobody@example.com", "--name", "x")


# --- across a SECRET_KEY rotation ---------------------------------------------------------

OLD_KEY = "old-secret-key-" + "o" * 40
NEW_KEY = "new-secret-key-" + "n" * 40


def models_with(key: str) -> int:
    """GET /api/models with the key, through the ASGI application daphne serves."""
    return AsgiApi().get("/api/models", key=key).status_code


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "after",
    [
        {"SECRET_KEY": NEW_KEY, "API_KEY_SECRET": OLD_KEY},  # the README's way: keys keep the old value
        {"SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": [OLD_KEY]},  # Django's own rotation
    ],
    ids=["api-key-secret", "secret-key-fallbacks"],
)
def test_a_key_made_before_a_secret_key_rotation_still_works_after_it(users, after):
    with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[], API_KEY_SECRET=None):
        _, key = api_key_create(user=users.alice, name="before")
        assert models_with(key) == 200
    with override_settings(**{"SECRET_KEY_FALLBACKS": [], "API_KEY_SECRET": None, **after}):
        assert models_with(key) == 200
        assert models_with(key[:-1] + ("A" if key[-1] != "A" else "B")) == 401
        _, made_after = api_key_create(user=users.alice, name="after")
        assert models_with(made_after) == 200


@pytest.mark.django_db(transaction=True)
def test_a_key_that_matched_a_fallback_survives_the_fallbacks_removal(users):
    with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[], API_KEY_SECRET=None):
        _, key = api_key_create(user=users.alice, name="before")
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY], API_KEY_SECRET=None):
        assert models_with(key) == 200  # used once during the rotation
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[], API_KEY_SECRET=None):
        assert models_with(key) == 200
