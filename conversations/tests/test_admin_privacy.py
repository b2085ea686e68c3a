"""No admin page tells an admin what a user's conversation says without an audit row.

The only way in is the audited read (see test_admin_reading.py). Every other admin
surface (the lists and their query strings, search, sorting, autocomplete, history,
delete confirmations, actions, the audit log itself, the recent actions) either
shows no content or is closed; with "admins may read conversations" off, nothing
shows content at all. Each probe is one an admin could type into the address bar.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from accounts.models import SiteSettings
from conversations.models import Conversation, ConversationRead, Message

pytestmark = pytest.mark.django_db

TITLE = "Kestrel migration plans"
PROMPT = "Speak as Marigold the gardener"
TEXT = "the vault code is 4711"
SECRETS = (TITLE, PROMPT, TEXT, "Kestrel", "Marigold", "4711")


def allow(on: bool) -> None:
    settings = SiteSettings.load()
    settings.admins_read_conversations = on
    settings.save()


@pytest.fixture
def admin_client(users) -> Client:
    client = Client()
    client.force_login(users.admin)
    return client


@pytest.fixture
def alices(users) -> Conversation:
    conversation = Conversation.objects.create(
        owner=users.alice, title=TITLE, system_prompt=PROMPT, params={"temperature": 0.3}
    )
    Message.objects.create(conversation=conversation, role="user", content=TEXT)
    return conversation


def reveals(response) -> bool:
    body = response.content.decode(errors="replace")
    return any(secret in body for secret in SECRETS)


def assert_audited_or_closed(response, conversation: Conversation) -> None:
    """Showing content is allowed only with an audit row for that conversation."""
    if reveals(response):
        assert ConversationRead.objects.filter(conversation=conversation).exists(), (
            f"content shown without an audit row ({response.status_code})"
        )


def hits(response) -> int | None:
    """How many rows a changelist answered with; None: the lookup was refused."""
    if response.status_code != 200 or "cl" not in (response.context or {}):
        return None
    return response.context["cl"].result_count


# --- the changelist's query string ---------------------------------------------------

# (admin list, a lookup that matches alice's content, one that does not)
PROBES = [
    ("conversations/conversation", {"title__icontains": "kestrel"}, {"title__icontains": "zebra"}),
    ("conversations/conversation", {"title__startswith": "K"}, {"title__startswith": "Z"}),
    ("conversations/conversation", {"title__gt": "J"}, {"title__gt": "L"}),
    ("conversations/conversation", {"system_prompt__startswith": "Speak"}, {"system_prompt__startswith": "Shout"}),
    ("conversations/conversation", {"system_prompt__regex": "Mari"}, {"system_prompt__regex": "Zebr"}),
    ("conversations/conversation", {"params__has_key": "temperature"}, {"params__has_key": "top_p"}),
    ("conversations/conversation", {"messages__content__contains": "4711"}, {"messages__content__contains": "9999"}),
    (
        "conversations/conversation",
        {"owner__conversations__title__contains": "K"},
        {"owner__conversations__title__contains": "Z"},
    ),
    ("accounts/user", {"conversations__title__icontains": "kestrel"}, {"conversations__title__icontains": "zebra"}),
    (
        "accounts/user",
        {"conversations__system_prompt__contains": "Mari"},
        {"conversations__system_prompt__contains": "Zeb"},
    ),
    (
        "accounts/user",
        {"conversations__messages__content__contains": "4711"},
        {"conversations__messages__content__contains": "9"},
    ),
    ("accounts/apikey", {"user__conversations__title__contains": "K"}, {"user__conversations__title__contains": "Z"}),
    (
        "conversations/conversationread",
        {"conversation_title__icontains": "kestrel"},
        {"conversation_title__icontains": "zebra"},
    ),
    (
        "conversations/conversationread",
        {"conversation__title__icontains": "kestrel"},
        {"conversation__title__icontains": "zebra"},
    ),
    (
        "conversations/conversationread",
        {"conversation__messages__content__contains": "4711"},
        {"conversation__messages__content__contains": "9"},
    ),
    ("conversations/conversationread", {"q": "kestrel"}, {"q": "zebra"}),
    ("conversations/conversation", {"q": "kestrel"}, {"q": "zebra"}),
]


@pytest.mark.parametrize("on", [True, False], ids=["reading-on", "reading-off"])
def test_no_lookup_answers_a_question_about_content(users, alices, admin_client, on):
    from accounts.services import api_key_create

    api_key_create(user=users.alice, name="k")
    allow(True)
    admin_client.get(f"/admin/conversations/conversation/{alices.pk}/change/")  # an audited read, for the log
    allow(on)
    audited = ConversationRead.objects.count()
    oracles = []
    for page, yes, no in PROBES:
        url = f"/admin/{page}/"
        answers = hits(admin_client.get(url, yes)), hits(admin_client.get(url, no))
        if answers[0] != answers[1]:
            oracles.append(f"{url}?{next(iter(yes))}: {answers}")
    assert not oracles or ConversationRead.objects.count() > audited, (
        "these lists tell which lookup matches alice's content:\n" + "\n".join(oracles)
    )


def test_lookups_on_what_the_list_shows_still_work(users, alices, admin_client):
    allow(True)
    url = "/admin/conversations/conversation/"
    assert hits(admin_client.get(url, {"owner__id__exact": users.alice.pk})) == 1
    assert hits(admin_client.get(url, {"owner__id__exact": users.bob.pk})) == 0
    assert hits(admin_client.get(url, {"updated__year": alices.updated.year})) == 1
    assert hits(admin_client.get(url, {"q": "alice@"})) == 1
    assert hits(admin_client.get("/admin/conversations/conversationread/", {"q": "alice@"})) == 0
    assert not ConversationRead.objects.exists()


def test_the_list_cannot_be_sorted_by_content(users, alices, admin_client):
    allow(True)
    columns = len(admin_client.get("/admin/conversations/conversation/").context["cl"].list_display)
    for index in range(columns):
        for sign in ("", "-"):
            response = admin_client.get("/admin/conversations/conversation/", {"o": f"{sign}{index}"})
            order = [str(o).lstrip("-") for o in response.context["cl"].queryset.query.order_by]
            assert not {"title", "system_prompt", "params"} & {o.split("__")[0] for o in order}, order
            assert not reveals(response)


# --- pages that name one conversation ------------------------------------------------


@pytest.mark.parametrize("on", [True, False], ids=["reading-on", "reading-off"])
@pytest.mark.parametrize(
    "source",
    ["conversationread&field_name=conversation", "message&field_name=conversation"],
    ids=["from-the-audit-log", "from-messages"],
)
def test_autocomplete_lists_no_titles(users, alices, admin_client, on, source):
    allow(on)
    response = admin_client.get(f"/admin/autocomplete/?app_label=conversations&model_name={source}&term=")
    assert_audited_or_closed(response, alices)


@pytest.mark.parametrize("on", [True, False], ids=["reading-on", "reading-off"])
def test_autocomplete_through_a_users_conversations_lists_no_titles(users, alices, admin_client, on):
    allow(on)
    response = admin_client.get("/admin/autocomplete/?app_label=accounts&model_name=user&field_name=conversations")
    assert_audited_or_closed(response, alices)


@pytest.mark.parametrize("on", [True, False], ids=["reading-on", "reading-off"])
def test_history_shows_no_title(users, alices, admin_client, on):
    allow(on)
    response = admin_client.get(f"/admin/conversations/conversation/{alices.pk}/history/")
    assert_audited_or_closed(response, alices)


@pytest.mark.parametrize("on", [True, False], ids=["reading-on", "reading-off"])
def test_the_audit_log_names_no_titles(users, alices, admin_client, on):
    allow(True)
    admin_client.get(f"/admin/conversations/conversation/{alices.pk}/change/")
    (entry,) = ConversationRead.objects.all()
    Conversation.objects.filter(pk=alices.pk).update(title=f"{TITLE} (renamed)")
    allow(on)
    log = admin_client.get("/admin/conversations/conversationread/")
    assert log.status_code == 200 and users.alice.email in log.content.decode()
    assert not reveals(log), "the log shows the title to whoever reads the log"
    row = admin_client.get(f"/admin/conversations/conversationread/{entry.pk}/change/")
    assert row.status_code == 200 and users.admin.email in row.content.decode()
    assert not reveals(row)
    assert ConversationRead.objects.count() == 1


def test_reading_stays_audited_and_deleting_the_conversation_leaves_no_content_in_the_log(users, alices, admin_client):
    allow(True)
    page = admin_client.get(f"/admin/conversations/conversation/{alices.pk}/change/")
    assert TITLE in page.content.decode() and TEXT in page.content.decode()
    alices.delete()
    (entry,) = ConversationRead.objects.all()
    assert (entry.reader, entry.owner, entry.conversation) == (users.admin, users.alice, None)
    assert not any(secret in entry.conversation_title for secret in SECRETS)


@pytest.mark.parametrize("on", [True, False], ids=["reading-on", "reading-off"])
def test_delete_confirmations_and_actions_name_no_conversation(users, alices, admin_client, on):
    allow(on)
    pages = [
        admin_client.get(f"/admin/conversations/conversation/{alices.pk}/delete/"),
        admin_client.get(f"/admin/accounts/user/{users.alice.pk}/delete/"),
        admin_client.post("/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [users.alice.pk]}),
        admin_client.post(
            "/admin/conversations/conversation/", {"action": "delete_selected", "_selected_action": [alices.pk]}
        ),
    ]
    for response in pages:
        assert_audited_or_closed(response, alices)
    assert Conversation.objects.filter(pk=alices.pk).exists()


def test_no_admin_page_lists_messages(users, alices, admin_client):
    allow(True)
    assert admin_client.get("/admin/conversations/message/").status_code == 404
    assert not reveals(admin_client.get("/admin/"))


def test_recent_actions_never_hold_a_title(users, alices, admin_client):
    """LogEntry keeps object_repr (the title) for ever: no admin action may log a conversation."""
    allow(True)
    base = f"/admin/conversations/conversation/{alices.pk}"
    admin_client.post("/admin/conversations/conversation/add/", {"title": "x", "owner": users.alice.pk})
    admin_client.post(f"{base}/change/", {"title": "changed", "owner": users.alice.pk})
    admin_client.post(f"{base}/delete/", {"post": "yes"})
    admin_client.post(
        "/admin/conversations/conversation/",
        {"action": "delete_selected", "post": "yes", "_selected_action": [alices.pk]},
    )
    assert not LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Conversation)).exists()
    assert not reveals(admin_client.get("/admin/"))
    assert Conversation.objects.get(pk=alices.pk).title == TITLE


@pytest.mark.parametrize("object_id", ["abc", "999999"])
def test_a_malformed_or_missing_id_is_refused_without_an_audit_row(users, alices, admin_client, object_id):
    allow(True)
    response = admin_client.get(f"/admin/conversations/conversation/{object_id}/change/")
    assert response.status_code in (302, 404)
    assert not ConversationRead.objects.exists()
