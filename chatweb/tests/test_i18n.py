"""The scripts' words come from Django's JavaScript catalog, which every page may load."""

from __future__ import annotations

import pytest
from django.test import Client

from chatweb.tests.test_content_policy import assert_strict

pytestmark = pytest.mark.django_db


def catalog(client: Client, **headers):
    return client.get("/jsi18n/", headers=headers)


@pytest.mark.parametrize("who", ["anonymous", "alice", "charlie"])
def test_the_catalog_is_javascript_for_everyone_under_the_policy(users, who):
    """Anonymous visitors (login page), approved and pending users all load it from base.html."""
    client = Client()
    if who != "anonymous":
        client.force_login(getattr(users, who))
    response = catalog(client)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    body = response.content.decode()
    for name in ("gettext", "ngettext", "interpolate"):
        assert f"globals.{name} = django.{name}" in body
    assert_strict(response)


def test_every_page_loads_the_catalog_before_its_modules(users):
    client = Client()
    client.force_login(users.alice)
    html = client.get("/").content.decode()
    catalog_at = html.index('<script src="/jsi18n/" defer></script>')
    assert catalog_at < html.index('<script type="module"')
    assert '<script src="/jsi18n/" defer></script>' in Client().get("/accounts/login/").content.decode()


def test_a_browser_asks_again_and_gets_a_new_catalog_only_for_another_language():
    client = Client()
    english = catalog(client, accept_language="en")
    assert english.status_code == 200
    assert "no-cache" in english["Cache-Control"]  # asked again each time: a deploy shows at once
    assert english["Last-Modified"]
    again = catalog(client, accept_language="en", if_none_match=english["ETag"])
    assert again.status_code == 304
    chinese = catalog(client, accept_language="zh-CN", if_none_match=english["ETag"])
    assert chinese.status_code == 200
    assert chinese["Content-Language"] == "zh-hans"
    assert chinese["ETag"] != english["ETag"]
