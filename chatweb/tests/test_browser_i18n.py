"""The chat page's scripts speak the reader's language: their words go through Django's
JavaScript catalog. A test-only zh_Hans translation of two of them proves it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import daphne_server, session_cookie
from inference_worker.models import ChatModel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

NO_CONVERSATIONS_ZH = "还没有对话。"
# With named placeholders (interpolate), in an order the English does not have.
PO = f"""msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Language: zh_Hans\\n"
"Plural-Forms: nplurals=1; plural=0;\\n"

msgid "No conversations yet."
msgstr "{NO_CONVERSATIONS_ZH}"

msgid "%(name)s (unavailable: %(reason)s)"
msgstr "不可用（%(reason)s）：%(name)s"
"""
REASON = "No worker is running for this model."  # the server's words, not the script's


@pytest.fixture(scope="module")
def translated_daphne(django_db_setup, tmp_path_factory):
    """A daphne of its own, started with a folder of translations made for the test."""
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.fail("msgfmt (GNU gettext) is not installed: run scripts/setup.sh (or apt-get install gettext)")
    locale = tmp_path_factory.mktemp("locale")
    messages = locale / "zh_Hans" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "djangojs.po").write_text(PO, encoding="utf-8")
    subprocess.run([msgfmt, "-o", str(messages / "djangojs.mo"), str(messages / "djangojs.po")], check=True)
    log = tmp_path_factory.mktemp("daphne-i18n") / "daphne.log"
    with daphne_server(log, CHATWEB_LOCALE_PATHS=str(locale)) as server:
        yield server


def chat_page(new_page, server, user, **options):
    page = new_page(**options)
    page.context.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": server.url}])
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.url}/")
    return page, errors


def test_the_chat_page_takes_its_words_from_the_catalog(translated_daphne, new_page, users):
    ChatModel.objects.create(name="orphan", display_name="Orphan", path="/none", queue="orphan")

    page, errors = chat_page(new_page, translated_daphne, users.alice)  # Playwright's browser asks for en-US
    sidebar = page.get_by_test_id("conversation-list")
    sidebar.get_by_text("No conversations yet.").wait_for()
    assert page.locator("#model option").first.inner_text() == f"Orphan (unavailable: {REASON})"
    assert page.get_by_test_id("model-state").inner_text() == "No model"  # none may be picked
    assert errors == []

    # A browser set to Chinese (mainland): zh-CN is served zh-hans.
    page, errors = chat_page(new_page, translated_daphne, users.bob, locale="zh-CN")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    page.get_by_test_id("conversation-list").get_by_text(NO_CONVERSATIONS_ZH).wait_for()
    assert page.locator("#model option").first.inner_text() == f"不可用（{REASON}）：Orphan"
    # a word the test did not translate stays in English
    assert page.get_by_test_id("model-state").inner_text() == "No model"
    assert errors == []
