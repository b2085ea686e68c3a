"""Start a knowledge worker: a Celery worker on KNOWLEDGE_QUEUE that converts, chunks and
embeds uploaded files (conversations.knowledge.ingest), off the inference workers and the web.

python manage.py run_knowledge_worker [--concurrency 1]

At start it fails the files a dead worker left half-done (they get a retry), and queues
a re-embedding of every ready file whose vectors came from another embedding model than
KNOWLEDGE_EMBEDDING_MODEL. While it runs it does that reaping once a minute.
"""

from __future__ import annotations

import logging
import socket
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run a knowledge worker: index uploaded files from KNOWLEDGE_QUEUE."

    def add_arguments(self, parser):
        # One file at a time uses both cores of a small machine already (the embedding
        # model runs on OpenMP threads); more only helps with many small files.
        parser.add_argument("--concurrency", type=int, default=1, help="files at once")
        parser.add_argument("--name", default="knowledge", help="worker name (default: knowledge)")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *, concurrency: int, name: str, loglevel: str, **options) -> None:
        from chatweb.celery import app
        from conversations.knowledge import ingest
        from conversations.knowledge.embedding import embedder
        from conversations.tasks import knowledge_reembed

        settings.KNOWLEDGE_DIR.mkdir(parents=True, exist_ok=True)
        model = embedder()  # loaded before the first file, and a bad setting fails here
        reaped = ingest.reap()
        stale = ingest.stale_embeddings()
        for document_id in stale:
            knowledge_reembed.apply_async(args=[document_id], queue=settings.KNOWLEDGE_QUEUE)
        self.stdout.write(
            f"knowledge worker {name}: queue {settings.KNOWLEDGE_QUEUE}, embedding model {model.name}; "
            f"{reaped} stalled files failed, {len(stale)} files queued for re-embedding"
        )
        hostname = f"{name}@{socket.gethostname()}"
        threading.Thread(target=_reap_forever, args=(hostname,), name="knowledge-reaper", daemon=True).start()
        app.worker_main(
            [
                "worker",
                "--pool=threads",  # conversion and embedding release the GIL in their C parts
                f"--concurrency={concurrency}",
                f"--queues={settings.KNOWLEDGE_QUEUE}",
                f"--hostname={hostname}",
                "--without-gossip",
                "--without-mingle",
                f"--loglevel={loglevel}",
            ]
        )


def _reap_forever(hostname: str) -> None:
    """Beat (pages say whether any knowledge worker is up) and fail the files of dead ones."""
    import time

    from django.db import close_old_connections

    from conversations.knowledge import ingest, presence

    reap_every = max(2, min(60, settings.KNOWLEDGE_STALE_SECONDS // 2))
    last_reap = time.monotonic()
    while True:
        try:
            presence.beat(hostname)
        except Exception:  # noqa: BLE001 - Redis away: the next beat tries again
            log.warning("the knowledge worker's heartbeat failed", exc_info=True)
        if time.monotonic() - last_reap >= reap_every:
            last_reap = time.monotonic()
            try:
                if n := ingest.reap():
                    log.warning("%s files left half-indexed by a stopped worker were failed", n)
            except Exception:  # noqa: BLE001
                log.exception("reaping stalled files failed")
            finally:
                close_old_connections()
        time.sleep(min(presence.BEAT_SECONDS, reap_every))
