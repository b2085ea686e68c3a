"""Uploaded files are converted in a child process, with a wall-clock and a memory limit.

The converters (pypdf; markitdown's mammoth, python-pptx, pandas, BeautifulSoup) read
untrusted bytes, and a crafted file can make one of them take hours or gigabytes while it
holds the GIL (nothing else in the worker runs: not its consumer, not its lease). In a
child the knowledge worker can stop it: after KNOWLEDGE_CONVERT_SECONDS the child is
killed and the file failed with the reason; its address space is capped at
KNOWLEDGE_CONVERT_MEMORY_MB (RLIMIT_AS), so an allocation past it is a MemoryError there,
not the machine's OOM killer here.

Each worker thread keeps one child (started with `spawn`, Django set up once: about a
second), talking over a pipe, and replaces it after a kill. Not multiprocessing.Pool: a
Pool whose worker dies starts another, and when a supervisor stops the whole process group
the dying parent's Pool then hung its exit for good (seen: a knowledge worker that never
finished its warm shutdown). A child here is never restarted behind anyone's back, and is
killed outright when the parent exits.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading

from django.conf import settings
from django.utils.translation import gettext

from conversations.knowledge import convert

_local = threading.local()
_children: set[_Reader] = set()
_children_lock = threading.Lock()


def _serve(conn, memory_bytes: int) -> None:
    """The child: read files until the pipe closes."""
    import resource

    import django

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    django.setup()
    while True:
        try:
            data, kind, max_pages = conn.recv()
        except (EOFError, OSError):
            return
        try:
            pages = convert.check(data, kind, max_pages=max_pages)
            conn.send(("ok", (pages, convert.convert(data, kind))))
        except convert.Refused as exc:
            conn.send(("refused", str(exc)))
        except MemoryError:
            conn.send(("memory", ""))
        except Exception as exc:  # noqa: BLE001 - a converter's own failure, named for the user
            conn.send(("error", exc.__class__.__name__))


class _Reader:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        memory = settings.KNOWLEDGE_CONVERT_MEMORY_MB * 1024 * 1024
        self.process = context.Process(target=_serve, args=(child, memory), name="knowledge-reader", daemon=True)
        self.process.start()
        child.close()
        with _children_lock:
            _children.add(self)

    def read(self, data: bytes, kind: str, max_pages: int, timeout: float):
        self.conn.send((data, kind, max_pages))
        if not self.conn.poll(timeout):
            raise TimeoutError
        return self.conn.recv()  # EOFError: the child died

    def kill(self) -> None:
        with _children_lock:
            _children.discard(self)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


@atexit.register
def _kill_children() -> None:
    with _children_lock:
        children = list(_children)
    for reader in children:
        reader.kill()


def _discard(reader: _Reader) -> None:
    """Kill this thread's child; the next file starts another."""
    reader.kill()
    _local.reader = None


def convert_isolated(data: bytes, kind: str, *, max_pages: int) -> tuple[int | None, list[convert.Page]]:
    """(page count, Markdown pages) of a file, read in this thread's child process."""
    reader = getattr(_local, "reader", None)
    if reader is None or not reader.process.is_alive():
        reader = _local.reader = _Reader()
    try:
        outcome, value = reader.read(data, kind, max_pages, settings.KNOWLEDGE_CONVERT_SECONDS)
    except TimeoutError:
        _discard(reader)
        raise convert.Refused(
            gettext("Reading this file took over %(seconds)s seconds; it was stopped.")
            % {"seconds": settings.KNOWLEDGE_CONVERT_SECONDS}
        ) from None
    except (EOFError, OSError):  # killed (the OOM killer, a supervisor stopping us)
        _discard(reader)
        raise convert.Refused(gettext("The process reading this file stopped before it finished.")) from None
    if outcome == "ok":
        return value
    if outcome == "memory":
        _discard(reader)  # a child that ran out of memory may be left in any state
        raise convert.Refused(
            gettext("Reading this file needed more than %(mb)s MB of memory; it was stopped.")
            % {"mb": settings.KNOWLEDGE_CONVERT_MEMORY_MB}
        )
    if outcome == "refused":
        raise convert.Refused(value)
    raise convert.Refused(gettext("This file could not be read (%(error)s).") % {"error": value})
