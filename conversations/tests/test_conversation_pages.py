"""The sidebar's JSON, rename / delete / settings / export, presets: owners only, CSRF always."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.models import SiteSettings
from conversations.models import Conversation, Message, Preset
from inference_worker.models import ChatModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db) -> ChatModel:
    return ChatModel.objects.create(name="m1", display_name="M1", path="/m", queue="m1", prompt_format="harmony")


def login(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def post(client: Client, url: str, body=None):
    return client.post(url, json.dumps(body if body is not None else {}), content_type="application/json")


def test_sidebar_pages_are_newest_first_without_gaps_or_repeats(users):
    for i in range(120):
        Conversation.objects.create(owner=users.alice, title=f"chat {i:03}")
    Conversation.objects.create(owner=users.bob, title="bob's")
    client = login(users.alice)
    seen, cursor, pages = [], "", 0
    while True:
        body = client.get("/c/list", {"cursor": cursor}).json()
        seen += [c["title"] for c in body["conversations"]]
        pages += 1
        cursor = body["next"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    assert seen[0] == "chat 119" and seen[-1] == "chat 000"
    assert "bob's" not in seen
    assert client.get("/c/list", {"cursor": "garbage"}).status_code == 400


def test_search_finds_titles_and_message_text_of_my_conversations_only(users):
    a = Conversation.objects.create(owner=users.alice, title="Dragons and bread")
    b = Conversation.objects.create(owner=users.alice, title="Untitled")
    Message.objects.create(conversation=b, role="user", content="how do I knead DOUGH?")
    theirs = Conversation.objects.create(owner=users.bob, title="dough secrets")
    Message.objects.create(conversation=theirs, role="user", content="dough")
    client = login(users.alice)
    ids = lambda q: [c["id"] for c in client.get("/c/list", {"q": q}).json()["conversations"]]  # noqa: E731
    assert ids("dragons") == [a.pk]
    assert ids("dough") == [b.pk]
    assert ids("nothing like this") == []
    assert len(ids("")) == 2


def test_another_users_conversation_cannot_be_touched_by_id(users, model):
    theirs = Conversation.objects.create(owner=users.bob, title="bob's", model=model)
    Message.objects.create(conversation=theirs, role="user", content="private")
    client = login(users.alice)
    for url, body in [
        (f"/c/{theirs.pk}/rename", {"title": "mine now"}),
        (f"/c/{theirs.pk}/delete", {}),
        (f"/c/{theirs.pk}/settings", {"system_prompt": "be evil"}),
    ]:
        assert post(client, url, body).status_code == 404, url
    for url in (f"/c/{theirs.pk}/", f"/c/{theirs.pk}/export.md", f"/c/{theirs.pk}/export.json"):
        assert client.get(url).status_code == 404, url
    theirs.refresh_from_db()
    assert theirs.title == "bob's" and theirs.system_prompt == "" and theirs.messages.count() == 1


def test_every_state_change_needs_the_csrf_token(users, model):
    mine = Conversation.objects.create(owner=users.alice, title="keep", model=model)
    client = login(users.alice, csrf=True)
    for url, body in [
        ("/c/new", {"model": "m1"}),
        (f"/c/{mine.pk}/rename", {"title": "x"}),
        (f"/c/{mine.pk}/delete", {}),
        (f"/c/{mine.pk}/settings", {"params": {"temperature": 1}}),
    ]:
        assert post(client, url, body).status_code == 403, url
    mine.refresh_from_db()
    assert mine.title == "keep" and mine.params == {} and Conversation.objects.count() == 1
    # with the token (as the page sends it) the same request works
    client.get("/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        f"/c/{mine.pk}/rename", json.dumps({"title": "x"}), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200


def test_rename_keeps_the_users_title_and_refuses_bad_ones(users, model):
    mine = Conversation.objects.create(owner=users.alice, title="auto", model=model)
    client = login(users.alice)
    assert post(client, f"/c/{mine.pk}/rename", {"title": "  Bread   notes "}).json()["title"] == "Bread notes"
    mine.refresh_from_db()
    assert mine.title == "Bread notes" and not mine.title_auto
    for bad in ("", "   ", None, 5, "x" * 500):
        response = post(client, f"/c/{mine.pk}/rename", {"title": bad})
        assert response.status_code == 400 and response.json()["error"]
    mine.refresh_from_db()
    assert mine.title == "Bread notes"


def test_delete_removes_the_conversation_and_its_messages(users, model):
    mine = Conversation.objects.create(owner=users.alice, model=model)
    Message.objects.create(conversation=mine, role="user", content="bye")
    assert post(login(users.alice), f"/c/{mine.pk}/delete").status_code == 200
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_settings_are_validated_and_kept_per_conversation(users, model):
    mine = Conversation.objects.create(owner=users.alice, model=model)
    client = login(users.alice)
    ok = post(
        client,
        f"/c/{mine.pk}/settings",
        {"params": {"temperature": 0.2, "max_tokens": 64, "reasoning_effort": "high"}, "system_prompt": "Be brief."},
    )
    assert ok.status_code == 200
    mine.refresh_from_db()
    assert mine.params == {"temperature": 0.2, "max_tokens": 64, "reasoning_effort": "high"}
    assert mine.system_prompt == "Be brief."
    for bad in (
        {"params": {"temperature": 9}},
        {"params": {"top_p": "high"}},
        {"params": {"reasoning_effort": "max"}},
        {"params": [1]},
        {"system_prompt": 3},
        {"model": "nope"},
    ):
        response = post(client, f"/c/{mine.pk}/settings", bad)
        assert response.status_code == 400 and response.json()["error"], bad
    mine.refresh_from_db()
    assert mine.params == {"temperature": 0.2, "max_tokens": 64, "reasoning_effort": "high"}
    assert mine.system_prompt == "Be brief." and mine.model == model


def test_built_in_tools_are_turned_on_only_where_the_site_and_model_allow(users, model):
    mine = Conversation.objects.create(owner=users.alice, model=model)
    client = login(users.alice)
    off = post(client, f"/c/{mine.pk}/settings", {"builtin_tools": ["python"]})
    assert off.status_code == 400 and off.json()["code"] == "tool_disabled"
    site = SiteSettings.load()
    site.python_tool_enabled = True
    site.save()
    on = post(client, f"/c/{mine.pk}/settings", {"builtin_tools": ["python"]})
    assert on.status_code == 200 and on.json()["builtin_tools"] == ["python"]
    for bad, code in (
        ({"builtin_tools": ["browser"]}, "tool_disabled"),  # the site has not enabled it
        ({"builtin_tools": ["shell"]}, "bad_tools"),
        ({"builtin_tools": "python"}, "bad_tools"),
        ({"builtin_tools": [1]}, "bad_tools"),
    ):
        response = post(client, f"/c/{mine.pk}/settings", bad)
        assert response.status_code == 400 and response.json()["code"] == code, bad
    model.allow_python = False
    model.save()
    assert post(client, f"/c/{mine.pk}/settings", {"builtin_tools": ["python"]}).json()["code"] == "tool_disabled"
    template = ChatModel.objects.create(name="m2", display_name="M2", path="/m", queue="m2")  # a chat template's
    other = Conversation.objects.create(owner=users.alice, model=template)
    assert post(client, f"/c/{other.pk}/settings", {"builtin_tools": ["python"]}).json()["code"] == "tool_disabled"
    theirs = Conversation.objects.create(owner=users.bob, model=model)
    assert post(client, f"/c/{theirs.pk}/settings", {"builtin_tools": []}).status_code == 404
    mine.refresh_from_db()
    assert mine.builtin_tools == ["python"]


def test_a_new_chat_takes_its_tools_with_it_and_the_picker_lists_what_each_model_offers(users, model):
    client = login(users.alice)
    assert client.get("/").context["page_data"]["choices"]["models"][0]["tools"] == []
    refused = post(client, "/c/new", {"model": model.name, "builtin_tools": ["browser"]})
    assert refused.status_code == 400 and refused.json()["code"] == "tool_disabled"
    assert not Conversation.objects.exists()  # refused: nothing stored
    site = SiteSettings.load()
    site.browser_tool_enabled = True
    site.save()
    assert client.get("/").context["page_data"]["choices"]["models"][0]["tools"] == ["browser"]
    created = post(client, "/c/new", {"model": model.name, "builtin_tools": ["browser"]})
    assert created.status_code == 201 and created.json()["builtin_tools"] == ["browser"]
    assert Conversation.objects.get().builtin_tools == ["browser"]


def test_presets_start_conversations_with_their_model_prompt_and_parameters(users, model):
    preset = Preset.objects.create(
        name="Terse", model=model, system_prompt="Answer in one line.", params={"temperature": 0.1}
    )
    hidden = Preset.objects.create(name="Off", model=model, enabled=False)
    client = login(users.alice)
    choices = client.get("/").context["page_data"]["choices"]
    assert [(p["name"], p["model"]) for p in choices["presets"]] == [("Terse", "m1")]
    created = post(client, "/c/new", {"preset": preset.pk}).json()
    conversation = Conversation.objects.get(pk=created["id"])
    assert conversation.model == model and conversation.preset == preset
    assert conversation.system_prompt == "Answer in one line." and conversation.params == {"temperature": 0.1}
    for body in ({"preset": hidden.pk}, {"preset": "1"}, {"preset": 999}):
        assert post(client, "/c/new", body).status_code == 400
    assert Conversation.objects.count() == 1


def test_a_preset_with_bad_parameters_is_refused_in_the_admin(users, model):
    client = login(users.admin)
    response = client.post(
        "/admin/conversations/preset/add/",
        {"name": "Bad", "model": model.pk, "params": '{"temperature": 7}', "enabled": "on"},
    )
    assert response.status_code == 200 and "temperature must be between" in response.content.decode()
    assert not Preset.objects.exists()


def test_exports_hold_the_conversation_and_respect_reasoning_visibility(users, model):
    mine = Conversation.objects.create(owner=users.alice, title="Bread / dough?", model=model, system_prompt="S")
    q = Message.objects.create(conversation=mine, role="user", content="How?")
    first = Message.objects.create(conversation=mine, parent=q, role="assistant", content="Knead.", reasoning="think A")
    second = Message.objects.create(conversation=mine, parent=q, role="assistant", content="Bake.", reasoning="think B")
    client = login(users.alice)

    md = client.get(f"/c/{mine.pk}/export.md")
    assert md["Content-Type"].startswith("text/markdown")
    assert 'filename="bread-dough.md"' in md["Content-Disposition"]
    text = md.content.decode()
    assert text.startswith("# Bread / dough?") and "How?" in text and "Bake." in text and "Knead." not in text
    assert "think B" in text
    picked = client.get(f"/c/{mine.pk}/export.md", {"leaf": first.pk}).content.decode()
    assert "Knead." in picked and "Bake." not in picked

    body = client.get(f"/c/{mine.pk}/export.json").json()
    assert body["title"] == "Bread / dough?" and body["system_prompt"] == "S"
    assert [(m["id"], m["parent"]) for m in body["messages"]] == [(q.pk, None), (first.pk, q.pk), (second.pk, q.pk)]

    settings = SiteSettings.load()
    settings.reasoning_visibility = "nobody"
    settings.save()
    assert "think" not in client.get(f"/c/{mine.pk}/export.md").content.decode()
    assert all(m["reasoning"] == "" for m in client.get(f"/c/{mine.pk}/export.json").json()["messages"])


HOSTILE_STEPS = [
    {"id": "s1", "tool": "browser.search", "kind": "search", "query": "<img src=x onerror=alert(1)>",
     "status": "done", "seconds": 0.2, "title": "Search results"},
    {"id": "s2", "tool": "browser.open", "kind": "open", "title": "<script>alert(2)</script>",
     "url": "https://example.org/a", "status": "done", "seconds": 1.5},
    {"id": "s3", "tool": "python", "kind": "python", "code": "print('```</details>')", "output": "```</details>\n",
     "status": "done", "seconds": 0.05},
]  # fmt: skip


def test_exports_hold_the_tool_steps_escaped_and_whoever_may_not_see_reasoning_sees_them(users, model):
    mine = Conversation.objects.create(owner=users.alice, title="t", model=model)
    q = Message.objects.create(conversation=mine, role="user", content="Tea?")
    Message.objects.create(conversation=mine, parent=q, role="assistant", content="China.", tool_steps=HOSTILE_STEPS)
    settings = SiteSettings.load()
    settings.reasoning_visibility = "nobody"
    settings.save()
    client = login(users.alice)
    body = client.get(f"/c/{mine.pk}/export.json").json()
    assert body["messages"][1]["tool_steps"] == HOSTILE_STEPS
    text = client.get(f"/c/{mine.pk}/export.md").content.decode()
    assert "<summary>Searched for “&lt;img src=x onerror=alert(1)&gt;” · 0.2 s</summary>" in text
    assert "<summary>Read &lt;script&gt;alert(2)&lt;/script&gt; · 1.5 s</summary>" in text
    assert "<script>" not in text and "<img" not in text
    assert "print('ʼʼʼ</details>')" in text  # a fence inside the code cannot close the block
    page = client.get(f"/c/{mine.pk}/").context["page_data"]
    assert page["messages"][-1]["tool_steps"] == HOSTILE_STEPS


def test_model_status_says_why_a_model_is_unavailable(users, model):
    body = login(users.alice).get("/models/status").json()
    (m1,) = body["models"]
    assert m1["name"] == "m1" and m1["available"] is False and m1["state"] == "offline"
    assert m1["reason"] == "No worker is running for this model."
    assert m1["harmony"] is True and m1["defaults"]["reasoning_effort"] == "medium"
    assert Client().get("/models/status").status_code == 401


def test_the_chat_page_embeds_the_whole_tree(users, model):
    mine = Conversation.objects.create(owner=users.alice, model=model)
    q = Message.objects.create(conversation=mine, role="user", content="Q")
    Message.objects.create(conversation=mine, parent=q, role="assistant", content="A1")
    Message.objects.create(conversation=mine, parent=q, role="assistant", content="A2")
    data = login(users.alice).get(f"/c/{mine.pk}/").context["page_data"]
    assert [(m["content"], m["parent"]) for m in data["messages"]] == [("Q", None), ("A1", q.pk), ("A2", q.pk)]
    assert data["conversation"]["id"] == mine.pk and data["sidebar"]["conversations"][0]["id"] == mine.pk


def test_titles_are_cleaned_from_what_a_model_says():
    from conversations.turns import title_clean

    assert title_clean('"Baking Bread With Dragons."\nmore text') == "Baking Bread With Dragons"
    assert title_clean("Title: **Paris facts**") == "Paris facts"
    assert title_clean("## The capital of France") == "The capital of France"
    assert title_clean("  \n ... \n") == ""
    assert len(title_clean("word " * 100)) == 80
