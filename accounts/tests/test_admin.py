from __future__ import annotations

import datetime

import pytest
from django.test import Client

from accounts.models import Role, SiteSettings, UsageDay, User
from accounts.services import LastAdminError, user_set_active, user_set_role
from conftest import PASSWORD
from conversations.models import Conversation

CHANGELIST = "/admin/accounts/user/"


@pytest.fixture
def admin_client(client, users):
    client.force_login(users.admin)
    return client


def act(client, action: str, *users: User):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [u.pk for u in users]}, follow=True)


@pytest.mark.django_db
def test_only_admins_reach_the_admin_panel(client, users):
    client.force_login(users.alice)
    assert client.get(CHANGELIST).status_code == 302
    client.force_login(users.admin)
    assert client.get(CHANGELIST).status_code == 200


@pytest.mark.django_db
def test_user_list_shows_role_status_conversations_and_tokens(admin_client, users):
    Conversation.objects.create(owner=users.alice, title="one")
    Conversation.objects.create(owner=users.alice, title="two")
    UsageDay.objects.create(user=users.alice, day=datetime.date(2026, 1, 1), prompt_tokens=100, completion_tokens=23)
    UsageDay.objects.create(user=users.alice, day=datetime.date(2026, 1, 2), prompt_tokens=7, completion_tokens=0)
    response = admin_client.get(CHANGELIST)
    rows = {u.email: u for u in response.context["cl"].result_list}
    assert rows["alice@example.com"]._conversations == 2
    assert rows["alice@example.com"]._tokens == 130
    assert rows["bob@example.com"]._conversations == 0
    html = response.content.decode()
    for column in ("Role", "Status", "Joined", "Last active", "Conversations", "Tokens used"):
        assert column.lower() in html.lower()
    assert "awaiting approval" in html


@pytest.mark.django_db
def test_pending_filter_lists_only_those_awaiting_approval(admin_client, users):
    response = admin_client.get(CHANGELIST + "?status=pending")
    assert [u.email for u in response.context["cl"].result_list] == ["charlie@example.com"]


@pytest.mark.django_db
def test_bulk_approve_and_reject(admin_client, users):
    dave = User.objects.create_user("dave@example.com", "x", role=Role.PENDING)
    act(admin_client, "approve", users.charlie, users.bob)
    users.charlie.refresh_from_db()
    assert users.charlie.role == Role.USER and users.charlie.is_active
    act(admin_client, "reject", dave, users.alice)
    dave.refresh_from_db()
    users.alice.refresh_from_db()
    assert not dave.is_active
    assert users.alice.is_active, "reject only touches pending users"


@pytest.mark.django_db
def test_promote_demote_deactivate(admin_client, users):
    act(admin_client, "promote", users.alice)
    users.alice.refresh_from_db()
    assert users.alice.role == Role.ADMIN and users.alice.is_staff and users.alice.is_superuser
    act(admin_client, "demote", users.alice)
    users.alice.refresh_from_db()
    assert users.alice.role == Role.USER and not users.alice.is_staff
    act(admin_client, "deactivate", users.bob)
    users.bob.refresh_from_db()
    assert not users.bob.is_active
    act(admin_client, "reactivate", users.bob)
    users.bob.refresh_from_db()
    assert users.bob.is_active


@pytest.mark.django_db
def test_the_last_admin_cannot_be_demoted_or_deactivated(admin_client, users):
    response = act(admin_client, "demote", users.admin)
    assert "last active admin" in response.content.decode()
    users.admin.refresh_from_db()
    assert users.admin.role == Role.ADMIN
    with pytest.raises(LastAdminError):
        user_set_active(user=users.admin, active=False)
    user_set_role(user=users.alice, role=Role.ADMIN)
    assert user_set_role(user=users.admin, role=Role.USER) is True


@pytest.mark.django_db
def test_site_settings_is_one_row_edited_in_the_admin(admin_client, users):
    response = admin_client.get("/admin/accounts/sitesettings/")
    assert response.url == "/admin/accounts/sitesettings/1/change/"
    response = admin_client.post(
        "/admin/accounts/sitesettings/1/change/",
        {
            "default_role": "user",
            "api_keys_enabled": "on",
            "reasoning_visibility": "admins",
            "admins_read_conversations": "",
            "default_requests_per_minute": "30",
            "default_concurrent_generations": "2",
            "default_tokens_per_day": "0",
            "default_max_tokens_per_answer": "512",
            "default_tool_calls_per_day": "40",
            "python_tool_enabled": "on",
            # documents: off here; the limits as the admin types them
            "upload_max_megabytes": "10",
            "upload_max_pages": "100",
            "documents_per_user": "20",
            "knowledge_megabytes_per_user": "0",
        },
    )
    assert response.status_code == 302
    settings = SiteSettings.load()
    assert settings.python_tool_enabled and not settings.browser_tool_enabled
    assert settings.default_tool_calls_per_day == 40
    assert (settings.default_requests_per_minute, settings.default_concurrent_generations) == (30, 2)
    assert settings.default_tokens_per_day == 0
    assert settings.default_max_tokens_per_answer == 512
    assert settings.signups_enabled is False
    assert settings.default_role == Role.USER
    assert settings.reasoning_visibility == "admins"
    assert settings.admins_read_conversations is False
    assert settings.knowledge_enabled is False
    assert (settings.upload_max_megabytes, settings.upload_max_pages) == (10, 100)
    assert (settings.documents_per_user, settings.knowledge_megabytes_per_user) == (20, 0)
    assert SiteSettings.objects.count() == 1
    assert admin_client.get("/admin/accounts/sitesettings/add/").status_code == 403


@pytest.mark.django_db
def test_site_settings_defaults():
    settings = SiteSettings.load()
    assert settings.signups_enabled is True
    assert settings.default_role == Role.PENDING
    assert settings.api_keys_enabled is True
    assert settings.reasoning_visibility == "everyone"
    assert settings.admins_read_conversations is True


@pytest.mark.django_db
def test_reasoning_visibility_rules(users):
    settings = SiteSettings.load()
    assert settings.may_see_reasoning(users.alice)
    settings.reasoning_visibility = "admins"
    assert settings.may_see_reasoning(users.admin) and not settings.may_see_reasoning(users.alice)
    settings.reasoning_visibility = "nobody"
    assert not settings.may_see_reasoning(users.admin)


@pytest.mark.django_db
def test_last_active_is_recorded(client, users):
    assert users.bob.last_active is None
    client.force_login(users.bob)
    client.get("/")
    users.bob.refresh_from_db()
    assert users.bob.last_active is not None


@pytest.mark.django_db
def test_admin_home_links_to_pending_signups(admin_client, users):
    html = admin_client.get("/admin/").content.decode()
    assert "1 signup awaiting approval" in html
    assert "/admin/accounts/user/?status=pending" in html


@pytest.mark.django_db
def test_admins_manage_model_rows(admin_client, users):
    from inference_worker.models import ChatModel

    response = admin_client.post(
        "/admin/inference_worker/chatmodel/add/",
        {
            "name": "gpt-oss-120b",
            "display_name": "gpt-oss-120b",
            "description": "",
            "path": "openai/gpt-oss-120b",
            "queue": "gpt-oss-120b",
            "prompt_format": "harmony",
            "enabled": "on",
            "default_temperature": "1.0",
            "default_top_p": "1.0",
            "default_max_tokens": "4096",
            "default_reasoning_effort": "medium",
            "context_length": "131072",
            "dtype": "auto",
            "max_num_seqs": "128",
            "tensor_parallel_size": "2",
            "gpu_memory_utilization": "0.9",
            "cpu_kv_cache_gib": "1",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    row = ChatModel.objects.get(name="gpt-oss-120b")
    assert row.tensor_parallel_size == 2 and row.is_harmony
    page = admin_client.get("/admin/inference_worker/chatmodel/").content.decode()
    assert "gpt-oss-120b" in page and "none" in page  # no live worker for it
    bad = admin_client.post("/admin/inference_worker/chatmodel/add/", {"name": "x", "queue": "bad queue!"})
    assert bad.status_code == 200 and ChatModel.objects.count() == 1


@pytest.mark.django_db
def test_the_admin_login_page_answers_anyone_and_lets_the_admin_in(users):
    client = Client()
    page = client.get("/admin/login/?next=/admin/")
    assert page.status_code == 200 and b'name="password"' in page.content
    assert client.get("/admin/").status_code == 302  # to that login page

    signed_in = client.post("/admin/login/?next=/admin/", {"username": users.admin.email, "password": PASSWORD})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200

    other = Client()
    refused = other.post("/admin/login/", {"username": users.alice.email, "password": PASSWORD})
    assert refused.status_code == 200 and b"errornote" in refused.content  # not staff: the form says so
    assert other.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_built_in_tools_are_allowed_per_model_in_the_admin_and_their_use_is_shown(admin_client, users):
    from inference_worker.models import ChatModel

    model = ChatModel.objects.create(name="oss", display_name="OSS", path="/m", queue="oss", prompt_format="harmony")
    page = admin_client.get(f"/admin/inference_worker/chatmodel/{model.pk}/change/").content.decode()
    assert 'name="allow_browser"' in page and 'name="allow_python"' in page
    UsageDay.objects.create(user=users.alice, day=datetime.date.today(), tool_calls=7)
    users.alice.tool_calls_per_day = 9
    users.alice.save()
    client = Client()
    client.force_login(users.alice)
    assert "Built-in tools: 7 of your 9 calls a day used today." in client.get("/accounts/keys/").content.decode()
