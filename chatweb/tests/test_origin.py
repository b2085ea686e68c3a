"""The chat websocket opens only for pages of the site's own origin: scheme, host and port."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import session_cookie
from conversations.models import Conversation
from inference_worker.models import ChatModel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation(users) -> Conversation:
    model = ChatModel.objects.create(name="orphan", display_name="Orphan", path="/none", queue="orphan")
    return Conversation.objects.create(owner=users.alice, model=model)


def open_socket(server, user, conversation: Conversation, origin: str) -> dict:
    """The server's greeting on a socket opened from a page of `origin`."""
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_cookie(user)}"
    with connect(
        f"{server.ws_url}/ws/chat/{conversation.pk}/",
        additional_headers={"Cookie": cookie, "Origin": origin},
        open_timeout=10,
    ) as ws:
        return json.loads(ws.recv(timeout=10))


def test_a_page_on_another_port_or_scheme_of_the_same_host_cannot_open_a_socket(live_daphne, users, conversation):
    port = live_daphne.url.rsplit(":", 1)[1]
    for origin in (
        "http://127.0.0.1:9999",  # another service on the same machine
        "http://127.0.0.1",
        f"https://127.0.0.1:{port}",
        f"http://localhost:{port}",  # an allowed host name, but not the one this page was served from
    ):
        with pytest.raises(InvalidStatus) as refused:
            open_socket(live_daphne, users.alice, conversation, origin)
        assert refused.value.response.status_code == 403, origin


def test_the_sites_own_origin_still_opens_the_socket(live_daphne, users, conversation):
    assert open_socket(live_daphne, users.alice, conversation, live_daphne.url) == {"type": "ready", "active": None}
    host_port = live_daphne.url.removeprefix("http://")
    assert open_socket(live_daphne, users.alice, conversation, f"HTTP://{host_port.upper()}")["type"] == "ready"
