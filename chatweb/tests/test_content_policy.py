"""Every page carries a strict Content-Security-Policy, and no page needs more than it allows."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest
from django.test import Client

from accounts.models import SiteSettings
from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def directives(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def assert_strict(response, host: str = "testserver") -> None:
    assert "Content-Security-Policy" in response.headers, f"no policy on {response.request}"
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'self'"]
    assert set(policy["connect-src"]) == {"'self'", f"ws://{host}"}


class InlineCode(HTMLParser):
    """What a page would need 'unsafe-inline' for: script bodies, event handlers, style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._script = False

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        self.found += [f"<{tag} {name}=...>" for name in names if name.startswith("on") or name == "style"]
        if any(value and value.strip().lower().startswith("javascript:") for value in names.values()):
            self.found.append(f"<{tag}> with a javascript: URL")
        self._script = tag == "script" and "src" not in names and names.get("type") != "application/json"
        if tag == "style":
            self.found.append("<style>")

    def handle_data(self, data):
        if self._script and data.strip():
            self.found.append(f"<script>{data.strip()[:40]}")

    def handle_endtag(self, tag):
        self._script = False


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_every_page_carries_the_policy_and_needs_nothing_it_refuses(users):
    site = SiteSettings.load()
    site.admins_read_conversations = True
    site.save()
    conversation = Conversation.objects.create(owner=users.alice, title="a title", system_prompt="be brief")
    Message.objects.create(conversation=conversation, role="user", content="hello")
    pages = {
        None: ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/no-such-page/"],
        users.alice: ["/", f"/c/{conversation.pk}/", "/accounts/keys/", "/accounts/password/change/"],
        users.charlie: ["/accounts/pending/"],
        users.admin: [
            "/admin/",
            "/admin/accounts/user/",
            f"/admin/accounts/user/{users.alice.pk}/change/",
            "/admin/accounts/sitesettings/",
            "/admin/conversations/conversation/",
            f"/admin/conversations/conversation/{conversation.pk}/change/",  # the transcript
            "/admin/conversations/preset/add/",
        ],
    }
    for user, paths in pages.items():
        client = client_for(user)
        for path in paths:
            response = client.get(path, follow=True)
            assert response.status_code in (200, 404), (path, response.status_code)
            assert_strict(response)
            assert inline_code(response.content.decode()) == [], path


@pytest.mark.django_db(transaction=True)
def test_daphne_serves_the_policy_with_its_own_websocket_origin(live_daphne):
    response = httpx.get(f"{live_daphne.url}/accounts/login/", timeout=30)
    assert response.status_code == 200
    assert_strict(response, host=live_daphne.url.removeprefix("http://"))
