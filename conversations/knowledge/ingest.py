"""Indexing one document, in a knowledge worker (manage.py run_knowledge_worker): parse,
chunk, embed, then write every chunk and mark the document ready in one transaction, so a
document is either wholly searchable or not at all.

The worker holds a lease on the document while it works (`updated` renewed every
KNOWLEDGE_LEASE_SECONDS by a side thread); a document in progress whose lease has run out
for KNOWLEDGE_STALE_SECONDS belongs to a worker that died (killed, out of memory): `reap`
fails it with a retry. Nothing of a half-indexed file is ever searched, since chunks are
written only at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import SiteSettings
from conversations.knowledge import chunking, convert
from conversations.knowledge.embedding import embedder, model_name
from conversations.knowledge.isolation import convert_isolated
from conversations.knowledge.search import words
from conversations.models import Chunk, Document, DocumentStatus

log = logging.getLogger(__name__)

IN_PROGRESS = (DocumentStatus.PARSING, DocumentStatus.CHUNKING, DocumentStatus.EMBEDDING)
EMBED_BATCH = 8  # passages per call: progress moves every second or two on a CPU
PASSAGES_PER_PAGE = 4  # a full page of text is 2-3 passages of 240 tokens


def stored_path(document: Document):
    return settings.KNOWLEDGE_DIR / document.key.hex


def _stage(document_id: int, worker: str, **fields) -> bool:
    """Move the document on, if it is still this worker's (not deleted, not reaped)."""
    return bool(
        Document.objects.filter(pk=document_id, worker=worker, status__in=IN_PROGRESS).update(
            updated=timezone.now(), **fields
        )
    )


class _Lease:
    """Renews the worker's claim while a long step (a big PDF's text) runs."""

    def __init__(self, document_id: int, worker: str) -> None:
        self.document_id, self.worker = document_id, worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{document_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(settings.KNOWLEDGE_LEASE_SECONDS):
            try:
                Document.objects.filter(pk=self.document_id, worker=self.worker, status__in=IN_PROGRESS).update(
                    updated=timezone.now()
                )
            except Exception:  # noqa: BLE001 - a missed renewal is retried; the stale limit allows several
                log.warning("renewing the lease on document %s failed", self.document_id, exc_info=True)
            finally:
                close_old_connections()

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def ingest(document_id: int, worker: str) -> str:
    """Index the document; returns its final status. A document not queued (deleted, taken,
    already indexed) is left alone."""
    claimed = Document.objects.filter(pk=document_id, status=DocumentStatus.QUEUED).update(
        status=DocumentStatus.PARSING,
        worker=worker,
        progress_done=0,
        progress_total=0,
        error="",
        updated=timezone.now(),
    )
    if not claimed:
        log.info("document %s is not queued; skipped", document_id)
        return ""
    document = Document.objects.filter(pk=document_id).first()
    if document is None:  # deleted just after the claim
        return ""
    Document.objects.filter(pk=document_id).update(attempts=document.attempts + 1)
    started = time.perf_counter()
    try:
        with _Lease(document_id, worker):
            outcome = _index(document, worker)
    except convert.Refused as exc:
        _fail(document_id, worker, str(exc))
        return DocumentStatus.FAILED
    except Exception as exc:
        log.exception("indexing document %s failed", document_id)
        message = gettext("Indexing failed (%(error)s). Retry, or upload the file again.")
        _fail(document_id, worker, message % {"error": exc.__class__.__name__})
        return DocumentStatus.FAILED
    log.info("document %s: %s in %.1f s", document_id, outcome, time.perf_counter() - started)
    return outcome


def _fail(document_id: int, worker: str, message: str) -> None:
    Document.objects.filter(pk=document_id, worker=worker, status__in=IN_PROGRESS).update(
        status=DocumentStatus.FAILED, error=message, updated=timezone.now()
    )


def _index(document: Document, worker: str) -> str:
    data = stored_path(document).read_bytes()
    site = SiteSettings.load()
    pages, converted = convert_isolated(data, document.kind, max_pages=site.upload_max_pages)
    if not _stage(document.pk, worker, status=DocumentStatus.CHUNKING, pages=pages):
        return ""
    found = chunking.passages(converted)
    if not found:
        raise convert.Refused(gettext("No text was found in this file (a scan without text is not read)."))
    most = site.upload_max_pages * PASSAGES_PER_PAGE
    if len(found) > most:  # a long text file has no pages to count: its passages are counted instead
        raise convert.Refused(
            gettext("This file is %(passages)s passages long; the most is %(most)s (%(pages)s pages' worth).")
            % {"passages": f"{len(found):,}", "most": f"{most:,}", "pages": f"{site.upload_max_pages:,}"}
        )
    if not _stage(document.pk, worker, status=DocumentStatus.EMBEDDING, progress_total=len(found)):
        return ""
    model = embedder()
    vectors = []
    for start in range(0, len(found), EMBED_BATCH):
        batch = found[start : start + EMBED_BATCH]
        vectors.extend(model.passages([_embedded_text(p) for p in batch]))
        if not _stage(document.pk, worker, progress_done=start + len(batch)):
            return ""  # deleted or reaped meanwhile: nothing written
    return _write(document, worker, found, vectors, model.name)


def _embedded_text(passage: chunking.Passage | Chunk) -> str:
    """What a passage's vector is made from: its heading path, then its text (the same for a
    stored chunk re-embedded)."""
    return f"{passage.heading}\n{passage.text}" if passage.heading else passage.text


def _write(document: Document, worker: str, found, vectors, model: str) -> str:
    with transaction.atomic():
        if (
            not Document.objects.select_for_update()
            .filter(pk=document.pk, worker=worker, status=DocumentStatus.EMBEDDING)
            .exists()
        ):
            return ""
        Chunk.objects.filter(document_id=document.pk).delete()  # a re-embedding replaces them
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document_id=document.pk,
                    ordinal=i,
                    text=p.text,
                    heading=p.heading[:500],
                    page=p.page,
                    tokens=p.tokens,
                    words=words(_embedded_text(p)),
                    embedding=vector,
                )
                for i, (p, vector) in enumerate(zip(found, vectors, strict=True))
            ],
            batch_size=200,
        )
        Document.objects.filter(pk=document.pk).update(
            status=DocumentStatus.READY,
            chunk_count=len(found),
            embedding_model=model,
            progress_done=len(found),
            worker="",
            error="",
            updated=timezone.now(),
        )
    return DocumentStatus.READY


def reap(now=None) -> int:
    """Fail the documents whose worker stopped renewing its lease (it died mid-file)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.KNOWLEDGE_STALE_SECONDS)
    lapsed = Document.objects.filter(status__in=IN_PROGRESS, updated__lt=stale)
    if not lapsed.exists():  # the usual case, and a read: pages poll this every second
        return 0
    return lapsed.update(
        status=DocumentStatus.FAILED,
        error=gettext("The worker indexing this file stopped before it finished. Retry."),
        worker="",
        updated=now,
    )


def stale_embeddings() -> list[int]:
    """Ready documents whose vectors came from another embedding model than the setting's."""
    return list(
        Document.objects.filter(status=DocumentStatus.READY)
        .exclude(embedding_model=model_name())
        .values_list("pk", flat=True)
    )


def reembed(document_id: int) -> bool:
    """New vectors for a ready document's chunks from the setting's model (after it changed).
    The document stays searchable by full text meanwhile; its vectors switch in one transaction."""
    target = model_name()
    document = Document.objects.filter(pk=document_id, status=DocumentStatus.READY).first()
    if document is None or document.embedding_model == target:
        return False
    chunks = list(Chunk.objects.filter(document_id=document_id).order_by("ordinal"))
    model = embedder()
    vectors = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        vectors.extend(model.passages([_embedded_text(c) for c in batch]))
    with transaction.atomic():
        for chunk, vector in zip(chunks, vectors, strict=True):
            chunk.embedding = vector
        Chunk.objects.bulk_update(chunks, ["embedding"], batch_size=200)
        Document.objects.filter(pk=document_id, status=DocumentStatus.READY).update(
            embedding_model=model.name, updated=timezone.now()
        )
    return True
