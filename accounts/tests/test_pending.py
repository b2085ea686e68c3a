"""A pending user can log in, sees the waiting page, and reaches nothing else."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.urls import reverse

from accounts.services import api_key_create
from conftest import session_cookie
from conversations.models import Conversation
from conversations.routing import websocket_urlpatterns
from conversations.tests.conftest import AsgiApi


@pytest.fixture
def charlie_client(client, users):
    client.force_login(users.charlie)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/", "/c/1/", "/admin/", "/accounts/email/"])
def test_pending_user_is_sent_to_the_waiting_page(charlie_client, url):
    response = charlie_client.get(url)
    assert response.status_code == 302
    assert response.url == reverse("account_pending")


@pytest.mark.django_db
def test_waiting_page_says_so(charlie_client):
    page = charlie_client.get(reverse("account_pending")).content.decode()
    assert "Awaiting approval" in page
    assert "charlie@example.com" in page


@pytest.mark.django_db
def test_approved_user_skips_the_waiting_page(client, users):
    client.force_login(users.alice)
    assert client.get(reverse("account_pending")).url == reverse("chat")


@pytest.mark.django_db(transaction=True)  # the ASGI application's request signals end a test's transaction
@pytest.mark.parametrize(
    ("method", "url"), [("GET", "/api/models"), ("GET", "/api/v1/models"), ("POST", "/api/chat/completions")]
)
def test_pending_user_gets_403_from_the_api(users, method, url):
    """Through the ASGI application daphne serves. Reads with the session; the POST with a key of
    the pending user's own (a session cannot spend the GPU, and a GET there is 405 first)."""
    if method == "GET":
        response = AsgiApi().get(url, user=users.charlie)
    else:
        key = api_key_create(user=users.charlie, name="pending")[1]
        response = AsgiApi().post(url, key=key, json={"model": "any", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_pending"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.django_db
def test_pending_user_can_still_log_out(charlie_client):
    assert charlie_client.post(reverse("account_logout")).status_code == 302
    assert charlie_client.get("/").url.startswith(reverse("account_login"))


async def _close_code(user, path: str) -> int | None:
    # Signed in as the page is, through a session cookie: an open socket reads its session again.
    headers = []
    if user.is_authenticated:
        cookie = await sync_to_async(session_cookie)(user)
        headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode())]
    communicator = WebsocketCommunicator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), path, headers)
    connected, _ = await communicator.connect()
    assert connected
    message = await communicator.receive_output(timeout=2)
    if message["type"] == "websocket.send":  # accepted: the greeting, then the socket stays open
        assert '"type": "ready"' in message["text"]
        await communicator.disconnect()
        return None
    assert message["type"] == "websocket.close"
    return message["code"]


@pytest.mark.django_db(transaction=True)
async def test_websocket_refuses_pending_users_with_4003(users):
    conversation = await Conversation.objects.acreate(owner=users.charlie, title="mine")
    assert await _close_code(users.charlie, f"/ws/chat/{conversation.pk}/") == 4003


@pytest.mark.django_db(transaction=True)
async def test_websocket_refuses_strangers_and_anonymous(users):
    from django.contrib.auth.models import AnonymousUser

    conversation = await Conversation.objects.acreate(owner=users.alice, title="alice's")
    assert await _close_code(users.bob, f"/ws/chat/{conversation.pk}/") == 4004
    assert await _close_code(AnonymousUser(), f"/ws/chat/{conversation.pk}/") == 4001
    assert await _close_code(users.alice, f"/ws/chat/{conversation.pk}/") is None


@pytest.mark.django_db
def test_deactivated_user_is_signed_out_at_once(client, users):
    client.force_login(users.bob)
    assert client.get("/").status_code == 200
    users.bob.is_active = False
    users.bob.save()
    assert client.get("/").url.startswith(reverse("account_login"))
