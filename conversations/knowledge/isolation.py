"""Uploaded files are converted in a child process, with a wall-clock and a memory limit.

The converters (pypdf; markitdown's mammoth, python-pptx, pandas, BeautifulSoup) read
untrusted bytes, and a crafted file can make one of them take hours or gigabytes while it
holds the GIL (nothing else in the worker runs: not its consumer, not its lease). In a
child the knowledge worker can stop it: after KNOWLEDGE_CONVERT_SECONDS the child is
killed and the file failed with the reason; its address space is capped at
KNOWLEDGE_CONVERT_MEMORY_MB (RLIMIT_AS), so an allocation past it is a MemoryError there,
not the machine's OOM killer here. Each worker thread keeps one child (started with
`spawn`, Django set up once, about a second), replaced after a kill.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading

from django.conf import settings
from django.utils.translation import gettext

from conversations.knowledge import convert

_local = threading.local()


def _start(memory_bytes: int) -> None:
    import resource

    import django

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    django.setup()


def _convert(data: bytes, kind: str, max_pages: int) -> tuple[int | None, list[convert.Page]]:
    pages = convert.check(data, kind, max_pages=max_pages)
    return pages, convert.convert(data, kind)


def _pool():
    pool = getattr(_local, "pool", None)
    if pool is None:
        memory = settings.KNOWLEDGE_CONVERT_MEMORY_MB * 1024 * 1024
        pool = multiprocessing.get_context("spawn").Pool(1, initializer=_start, initargs=(memory,))
        _local.pool = pool
        atexit.register(pool.terminate)  # before the interpreter tears down what Pool.__del__ needs
    return pool


def _discard() -> None:
    pool = getattr(_local, "pool", None)
    _local.pool = None
    if pool is not None:
        atexit.unregister(pool.terminate)
        pool.terminate()
        pool.join()


def convert_isolated(data: bytes, kind: str, *, max_pages: int) -> tuple[int | None, list[convert.Page]]:
    """(page count, Markdown pages) of a file, converted in this thread's child process."""
    try:
        return _pool().apply_async(_convert, (data, kind, max_pages)).get(settings.KNOWLEDGE_CONVERT_SECONDS)
    except multiprocessing.TimeoutError:  # also a child that died (the pool never answers)
        _discard()
        raise convert.Refused(
            gettext("Reading this file took over %(seconds)s seconds; it was stopped.")
            % {"seconds": settings.KNOWLEDGE_CONVERT_SECONDS}
        ) from None
    except MemoryError:
        _discard()
        raise convert.Refused(
            gettext("Reading this file needed more than %(mb)s MB of memory; it was stopped.")
            % {"mb": settings.KNOWLEDGE_CONVERT_MEMORY_MB}
        ) from None
