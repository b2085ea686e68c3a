"""Documents in a real browser: a PDF attached in the composer is indexed by the real
knowledge worker, a question about it is answered by the real (scripted) gpt-oss with a
citation of the right page, the citation opens its passage (live and after a reload), and
the Markdown export carries the sources. Collections on the knowledge page, and another
user kept away from the files."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from chatweb.testing.documents import make_pdf
from chatweb.testing.workers import KNOWLEDGE_ANSWER, KNOWLEDGE_QUESTION
from conftest import PHONE, assert_fits_the_screen, assert_in_view, screenshot
from conversations.knowledge import services
from conversations.models import Collection, Conversation, Document, Message
from conversations.tests.test_browser_chat import XSS, accept_the_refused_payload, assert_inert, signed_in_page
from conversations.tests.test_browser_phone import signed_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PAGES = ["Welcome to the handbook.", "The vault code is PELICAN-42.", "Closing words."]
OUTLINE = [("Introduction", 1), ("Security", 2)]


def handbook() -> bytes:
    return make_pdf(PAGES, outline=OUTLINE)


def ready(locator, page, timeout: float = 60_000) -> None:
    locator.and_(page.locator("[data-status=ready]")).wait_for(timeout=timeout)


def check_citation(page, answer, document: Document) -> None:
    """The answer's [1] opens source 1: the file, page 2, its heading and the passage."""
    citation = answer.get_by_test_id("source-citation")
    assert citation.count() == 1
    assert citation.inner_text() == "[1]"
    citation.click()
    panel = page.get_by_test_id("source-panel")
    panel.wait_for()
    screenshot(page, "knowledge-citation")
    assert citation.get_attribute("aria-expanded") == "true"
    assert panel.get_by_test_id("source-name").inner_text() == "handbook.pdf"
    assert panel.get_by_test_id("source-page").inner_text() == "page 2"
    assert panel.get_by_test_id("source-heading").inner_text() == "Security"
    assert "The vault code is PELICAN-42." in panel.get_by_test_id("source-text").inner_text()
    download = panel.get_by_test_id("source-download")
    assert download.get_attribute("href") == f"/knowledge/files/{document.pk}/download"
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    assert citation.get_attribute("aria-expanded") == "false"


def test_a_question_about_an_attached_pdf_cites_its_page(live_daphne, new_page, users, gpt_oss, knowledge_worker):
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.goto(f"{live_daphne.url}/")
    page.select_option("#model", gpt_oss.name)
    assert page.get_by_test_id("attach").is_visible()

    # the first file of a new chat makes the conversation, as a first message would
    pdf = handbook()
    page.get_by_test_id("attach-input").set_input_files(
        files=[{"name": "handbook.pdf", "mimeType": "application/pdf", "buffer": pdf}]
    )
    chip = page.get_by_test_id("attachment")
    ready(chip, page)
    assert re.fullmatch(r"Ready · \d+ passages?", chip.get_by_test_id("attachment-status").inner_text())
    conversation = Conversation.objects.get(owner=users.alice)
    assert page.url == f"{live_daphne.url}/c/{conversation.pk}/"
    document = Document.objects.get(owner=users.alice)
    assert (document.conversation_id, document.name, document.pages) == (conversation.pk, "handbook.pdf", 3)

    page.fill("[data-testid=prompt]", KNOWLEDGE_QUESTION)
    page.keyboard.press("Enter")
    answer = page.locator(".message.assistant")
    answer.locator(".status", has_text="Done").wait_for(timeout=180_000)
    assert answer.get_by_test_id("content").inner_text().strip() == KNOWLEDGE_ANSWER

    # the search is the answer's first step, its sources listed under it
    step = answer.get_by_test_id("step").first
    headline = step.get_by_test_id("step-headline").inner_text()
    assert re.fullmatch(r"Searched 1 file: \d+ passages? · \d+ ms", headline), headline
    message = Message.objects.get(conversation=conversation, role="assistant")
    assert message.sources, "the answer was stored without its sources"
    first = message.sources[0]
    assert (first["n"], first["name"], first["page"], first["document_id"]) == (1, "handbook.pdf", 2, document.pk), (
        message.sources
    )
    assert "PELICAN-42" in first["text"]
    step.locator("summary").click()
    assert step.get_by_test_id("step-source").first.inner_text() == "[1] handbook.pdf, page 2 (Security)"
    step.locator("summary").click()
    # the search's time among the status bar's timings
    assert re.search(r"search \d+ ms", page.get_by_test_id("speed").inner_text())

    check_citation(page, answer, document)
    # the panel's download is the file itself, as an attachment
    response = page.request.get(f"{live_daphne.url}/knowledge/files/{document.pk}/download")
    assert response.ok and response.body() == pdf
    assert response.headers["content-disposition"].startswith("attachment")

    # drawn again from what was stored
    page.reload()
    answer = page.locator(".message.assistant")
    answer.locator(".status", has_text="Done").wait_for()
    ready(page.get_by_test_id("attachment"), page, timeout=15_000)  # the conversation's file, still attached
    assert answer.get_by_test_id("step-headline").first.inner_text() == headline
    check_citation(page, answer, document)
    assert re.search(r"search \d+ ms", page.get_by_test_id("speed").inner_text())

    with page.expect_download() as download:
        page.get_by_test_id("export-md").click()
    exported = Path(download.value.path()).read_text()
    assert "### Sources" in exported
    sources = exported.split("### Sources", 1)[1]
    assert "[1] handbook.pdf, page 2 (Security)" in sources
    assert "> The vault code is PELICAN-42." in sources
    assert headline in exported

    # on a phone the passage is a sheet along the bottom of the screen
    phone = signed_in(new_page, live_daphne, users.alice, **PHONE)
    phone.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    phone.locator(".message.assistant").get_by_test_id("source-citation").click()
    assert_in_view(phone.get_by_test_id("source-panel").get_by_test_id("source-download"))
    assert_fits_the_screen(phone)
    screenshot(phone, "phone-knowledge-citation")
    assert phone.errors == []


def test_another_user_cannot_reach_a_file(live_daphne, new_page, users, fake_worker):
    conversation = Conversation.objects.create(owner=users.alice, model=fake_worker, title="t", title_auto=False)
    document = services.upload(
        users.alice, services.Upload(name="handbook.pdf", data=handbook()), conversation_id=conversation.pk
    )
    alice = signed_in_page(new_page, live_daphne, users.alice)
    alice.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    alice.get_by_test_id("attachment").wait_for()
    assert alice.request.get(f"{live_daphne.url}/knowledge/files/{document.pk}").ok

    bob = signed_in_page(new_page, live_daphne, users.bob)
    bob.goto(f"{live_daphne.url}/knowledge/")
    for path in (
        f"/knowledge/files/{document.pk}",
        f"/knowledge/files/{document.pk}/download",
        f"/knowledge/conversations/{conversation.pk}",
    ):
        response = bob.request.get(f"{live_daphne.url}{path}")
        assert response.status == 404, path
        assert "handbook" not in response.text()
    csrf = next(c["value"] for c in bob.context.cookies() if c["name"] == "csrftoken")
    for action in ("delete", "retry"):
        response = bob.request.post(
            f"{live_daphne.url}/knowledge/files/{document.pk}/{action}", headers={"X-CSRFToken": csrf}, data="{}"
        )
        assert response.status == 404, action
    assert Document.objects.filter(pk=document.pk).exists()
    assert bob.get_by_test_id("collection").count() == 0


def test_a_collection_on_the_knowledge_page(live_daphne, new_page, users, fake_worker, knowledge_worker):
    page = signed_in(new_page, live_daphne, users.alice)  # its confirmations are answered below
    page.goto(f"{live_daphne.url}/")
    page.get_by_test_id("nav-knowledge").click()
    page.wait_for_url(f"{live_daphne.url}/knowledge/")
    limits = page.get_by_test_id("limits").inner_text()
    assert "25 MB and 500 pages" in limits and "200 files" in limits and "500 MB" in limits
    assert "PDF" in page.get_by_test_id("formats").inner_text()
    assert page.get_by_test_id("collection-shared").count() == 0  # only an admin shares

    page.get_by_test_id("collection-name").fill("Handbooks <b>")
    page.get_by_test_id("collection-create").click()
    page.get_by_test_id("collection-title").get_by_text("Handbooks <b>").wait_for()
    collection = Collection.objects.get(owner=users.alice)

    # several at once, each in its own row: one indexed, one refused in place
    page.get_by_test_id("upload-input").set_input_files(
        files=[
            {"name": "handbook.pdf", "mimeType": "application/pdf", "buffer": handbook()},
            {"name": "fake.pdf", "mimeType": "application/pdf", "buffer": b"not a pdf at all"},
        ]
    )
    rows = page.get_by_test_id("file")
    good = rows.filter(has_text="handbook.pdf")
    ready(good, page)
    assert re.fullmatch(r"Ready · \d+ passages?", good.get_by_test_id("file-status").inner_text())
    bad = rows.filter(has_text="fake.pdf")
    assert bad.get_attribute("data-status") == "refused"
    screenshot(page, "knowledge-page")
    assert "This is not a PDF file." in bad.get_by_test_id("file-status").inner_text()
    bad.get_by_test_id("file-dismiss").click()
    assert rows.count() == 1
    document = Document.objects.get(owner=users.alice)
    assert document.collection_id == collection.pk
    assert page.get_by_test_id("collection").get_by_text("1 file").is_visible()

    page.get_by_test_id("collection-edit").click()
    page.get_by_test_id("edit-name").fill("Handbooks")
    page.get_by_test_id("edit-save").click()
    page.get_by_test_id("collection-title").get_by_text("Handbooks", exact=True).wait_for()
    collection.refresh_from_db()
    assert collection.name == "Handbooks"

    # a file whose indexing failed says why, in place, and is read again on Retry
    Document.objects.filter(pk=document.pk).update(status="failed", error="Indexing failed (Boom).")
    page.reload()
    row = page.get_by_test_id("file")
    row.and_(page.locator("[data-status=failed]")).wait_for()
    assert row.get_by_test_id("file-status").inner_text() == "Failed: Indexing failed (Boom)."
    row.get_by_test_id("file-retry").click()
    ready(row, page)

    # the chat's settings offer it; ticked in a new chat, it goes with the conversation
    page.goto(f"{live_daphne.url}/")
    page.get_by_test_id("params").locator("summary").click()
    choice = page.get_by_test_id("collection-choice")
    choice.check()
    page.get_by_test_id("attached-collection").get_by_text("Handbooks").wait_for()
    # a file dropped on the chat is attached to it (and makes the conversation)
    dropped = page.evaluate_handle(
        "() => { const data = new DataTransfer();"
        " data.items.add(new File(['# Notes\\n\\nNothing here.'], 'notes.md', {type: 'text/markdown'}));"
        " return data; }"
    )
    page.dispatch_event(".chat-main", "dragenter", {"dataTransfer": dropped})
    assert "dropping" in page.locator(".chat-main").get_attribute("class")
    page.dispatch_event(".chat-main", "drop", {"dataTransfer": dropped})
    assert "dropping" not in page.locator(".chat-main").get_attribute("class")
    ready(page.get_by_test_id("attachment"), page)
    assert page.get_by_test_id("attachment").locator(".chip-name").inner_text() == "notes.md"
    screenshot(page, "knowledge-chat-attachments")
    conversation = Conversation.objects.get(owner=users.alice)
    assert list(conversation.collections.values_list("pk", flat=True)) == [collection.pk]
    page.reload()
    page.get_by_test_id("attached-collection").get_by_text("Handbooks").wait_for()
    # removed from the chip: detached, not deleted
    page.get_by_test_id("attached-collection-remove").click()
    page.get_by_test_id("attached-collection").wait_for(state="detached")
    for _ in range(50):
        if not conversation.collections.exists():
            break
        time.sleep(0.1)
    assert not conversation.collections.exists()
    assert Collection.objects.filter(pk=collection.pk).exists()
    page.get_by_test_id("attachment-remove").click()
    page.get_by_test_id("attachment").wait_for(state="detached")
    assert not Document.objects.filter(owner=users.alice, conversation=conversation).exists()

    # the collection and its file deleted together
    page.goto(f"{live_daphne.url}/knowledge/#collection-{collection.pk}")
    ready(page.get_by_test_id("file"), page, timeout=15_000)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("collection-delete").click()
    page.get_by_test_id("collection").wait_for(state="detached")
    assert not Collection.objects.filter(pk=collection.pk).exists()
    assert not Document.objects.filter(pk=document.pk).exists()
    assert page.errors == []


def test_the_knowledge_page_on_a_phone(live_daphne, new_page, users):
    collection = Collection.objects.create(owner=users.alice, name="A collection with a long name " * 3)
    page = signed_in(new_page, live_daphne, users.alice, **PHONE)
    page.goto(f"{live_daphne.url}/knowledge/")
    page.get_by_test_id("collection-title").wait_for()
    assert page.get_by_test_id("collection-title").inner_text().strip() == collection.name.strip()
    page.get_by_test_id("choose-files").scroll_into_view_if_needed()
    assert_in_view(page.get_by_test_id("choose-files"))
    assert_fits_the_screen(page)
    screenshot(page, "phone-knowledge")
    assert page.errors == []


def test_hostile_sources_stay_text(live_daphne, new_page, users, fake_worker):
    """A source's name, heading and passage came from an uploaded file, its numbers from the
    stored message: the XSS list in each, numbers that are not numbers, a citation of a
    source that does not exist, and one inside code, all stay text."""
    hostile = "\n".join(XSS)
    conversation = Conversation.objects.create(owner=users.alice, model=fake_worker)
    question = Message.objects.create(conversation=conversation, role="user", content="What does it say?")
    sources = [
        {
            "n": 1,
            "document_id": "javascript:alert(1)",
            "name": hostile,
            "page": hostile,
            "heading": hostile,
            "text": hostile,
        },
        {"n": "2", "document_id": 2, "name": "two", "page": 1, "heading": "", "text": "two"},
    ]
    step = {
        "id": "step_k",
        "tool": "knowledge",
        "kind": "knowledge",
        "status": "done",
        "files": "<b>",
        "passages": 2,
        "seconds": 0.012,
        "sources": sources,
    }
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="done",
        content="It says so [1], not [2] nor [7]; `[1]` in code.\n\n" + "\n\n".join(XSS),
        tool_steps=[step],
        sources=sources,
    )
    page = signed_in_page(new_page, live_daphne, users.alice)
    page.goto(f"{live_daphne.url}/c/{conversation.pk}/")
    answer = page.locator(".message.assistant")
    answer.get_by_test_id("step").first.wait_for()
    assert answer.get_by_test_id("step-headline").inner_text() == "Searched 0 files: 2 passages · 12 ms"
    citations = answer.get_by_test_id("source-citation")
    assert citations.count() == 1  # [2] has no source numbered 2, [7] none at all, code is code
    assert "[2] nor [7]" in answer.get_by_test_id("content").inner_text()
    citations.click()
    panel = page.get_by_test_id("source-panel")
    assert panel.get_by_test_id("source-name").text_content() == hostile
    assert panel.get_by_test_id("source-text").inner_text() == hostile
    assert panel.get_by_test_id("source-download").count() == 0  # no file id: no link
    assert panel.locator("script, img, iframe, a").count() == 0
    page.keyboard.press("Escape")
    answer.get_by_test_id("step").locator("summary").click()
    assert answer.get_by_test_id("step-source").count() == 1
    assert answer.get_by_test_id("step-source").inner_text().startswith("[1] <img src=x onerror=alert(1)>")
    page.wait_for_timeout(300)
    assert_inert(page)
    assert page.locator("body script:not([src]):not([type='application/json'])").count() == 0
    accept_the_refused_payload(new_page)
