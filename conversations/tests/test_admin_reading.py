"""Admins read other users' conversations only when the site allows it, and every read is logged."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import SiteSettings
from conversations.models import Conversation, ConversationRead, Message

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def allow(on: bool) -> None:
    settings = SiteSettings.load()
    settings.admins_read_conversations = on
    settings.save()


@pytest.fixture
def alices(users) -> Conversation:
    conversation = Conversation.objects.create(owner=users.alice, title="alice's diary")
    Message.objects.create(conversation=conversation, role="user", content="<b>dear diary</b>")
    return conversation


def test_off_by_default_admins_cannot_read(users, alices):
    allow(False)
    admin = login(users.admin)
    assert admin.get("/admin/conversations/conversation/").status_code == 403
    response = admin.get(f"/admin/conversations/conversation/{alices.pk}/change/")
    assert response.status_code in (302, 403)
    assert "dear diary" not in response.content.decode()
    assert not ConversationRead.objects.exists()


def test_when_allowed_a_read_is_read_only_and_logged(users, alices):
    allow(True)
    admin = login(users.admin)
    listing = admin.get("/admin/conversations/conversation/").content.decode()
    assert f"#{alices.pk}" in listing and users.alice.email in listing
    assert "diary" not in listing, "the list shows no content; only an (audited) read does"
    assert not ConversationRead.objects.exists()
    page = admin.get(f"/admin/conversations/conversation/{alices.pk}/change/").content.decode()
    assert "&lt;b&gt;dear diary&lt;/b&gt;" in page and "<b>dear diary</b>" not in page
    (entry,) = ConversationRead.objects.all()
    assert (entry.reader, entry.owner, entry.conversation) == (users.admin, users.alice, alices)
    log = admin.get("/admin/conversations/conversationread/").content.decode()
    assert users.alice.email in log and users.admin.email in log
    # read only: no edit, no delete, and the log itself cannot be changed
    assert admin.post(f"/admin/conversations/conversation/{alices.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin.get(f"/admin/conversations/conversationread/{entry.pk}/delete/").status_code == 403
    assert Conversation.objects.filter(pk=alices.pk).exists() and ConversationRead.objects.count() == 1


def test_users_never_reach_the_admin_views(users, alices):
    allow(True)
    alice = login(users.bob)
    assert alice.get(f"/admin/conversations/conversation/{alices.pk}/change/").status_code == 302
    assert alice.get("/admin/conversations/conversationread/").status_code == 302
    assert not ConversationRead.objects.exists()


def test_an_admin_reads_the_tool_steps_escaped(users, alices):
    allow(True)
    Message.objects.create(
        conversation=alices,
        role="assistant",
        content="ok",
        tool_steps=[
            {
                "id": "s1",
                "tool": "python",
                "kind": "python",
                "code": "print('<b>x</b>')",
                "output": "<b>x</b>\n",
                "status": "done",
                "seconds": 0.05,
            },
        ],  # fmt: skip
    )
    page = login(users.admin).get(f"/admin/conversations/conversation/{alices.pk}/change/").content.decode()
    assert "Ran python · 0.1 s" in page or "Ran python · 0.0 s" in page
    assert "print(&#x27;&lt;b&gt;x&lt;/b&gt;&#x27;)" in page and "<b>x</b>" not in page
