from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection
from django.test import Client
from django.urls import reverse

from accounts.models import Role, SiteSettings, User
from conftest import PASSWORD


def signup(client: Client, email: str):
    return client.post(reverse("account_signup"), {"email": email, "password1": PASSWORD, "password2": PASSWORD})


@pytest.mark.django_db
def test_first_signup_becomes_admin_and_the_next_waits(client):
    response = signup(client, "first@example.com")
    assert response.status_code == 302
    first = User.objects.get(email="first@example.com")
    assert first.role == Role.ADMIN and first.is_staff and first.is_superuser

    other = Client()
    response = signup(other, "second@example.com")
    assert response.status_code == 302
    second = User.objects.get(email="second@example.com")
    assert second.role == Role.PENDING and not second.is_staff
    assert other.get(reverse("chat")).url == reverse("account_pending")


@pytest.mark.django_db
def test_signup_role_follows_site_settings(client, users):
    settings = SiteSettings.load()
    settings.default_role = Role.USER
    settings.save()
    signup(client, "dave@example.com")
    assert User.objects.get(email="dave@example.com").role == Role.USER
    assert client.get(reverse("chat")).status_code == 200


@pytest.mark.django_db
def test_signups_disabled_says_so_and_creates_nothing(client, users):
    settings = SiteSettings.load()
    settings.signups_enabled = False
    settings.save()
    page = client.get(reverse("account_signup"))
    assert "Sign Up Closed" in page.content.decode() or "signup is currently closed" in page.content.decode().lower()
    before = User.objects.count()
    response = signup(client, "eve@example.com")
    assert response.status_code == 200
    assert User.objects.count() == before
    assert not User.objects.filter(email="eve@example.com").exists()


@pytest.mark.django_db
def test_deleting_the_first_admin_does_not_make_the_next_signup_admin(client, users):
    users.admin.delete()
    signup(client, "frank@example.com")
    assert User.objects.get(email="frank@example.com").role == Role.PENDING


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_simultaneous_first_signups_give_exactly_one_admin(round_):
    """Eight browsers sign up at the same instant on an empty site: one admin, seven pending."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def sign_up(n: int) -> None:
        try:
            client = Client()
            barrier.wait()
            response = signup(client, f"racer{n}@example.com")
            assert response.status_code == 302, response.content[:500]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert User.objects.count() == 8
    assert User.objects.filter(role=Role.ADMIN).count() == 1
    assert User.objects.filter(role=Role.PENDING).count() == 7


@pytest.mark.django_db
def test_login_logout_and_change_password(client, users):
    assert (
        client.post(reverse("account_login"), {"login": "alice@example.com", "password": PASSWORD}).status_code == 302
    )
    assert client.get(reverse("chat")).status_code == 200
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": "a-new-long-passphrase-77", "password2": "a-new-long-passphrase-77"},
    )
    assert response.status_code == 302
    client.post(reverse("account_logout"))
    assert client.get(reverse("chat")).status_code == 302
    assert (
        client.post(reverse("account_login"), {"login": "alice@example.com", "password": PASSWORD}).status_code == 200
    )
    assert (
        client.post(
            reverse("account_login"), {"login": "alice@example.com", "password": "a-new-long-passphrase-77"}
        ).status_code
        == 302
    )


@pytest.mark.django_db
def test_createsuperuser_style_accounts_are_admins(db):
    user = User.objects.create_superuser("root@example.com", PASSWORD)
    assert user.role == Role.ADMIN and user.is_staff and user.is_superuser
