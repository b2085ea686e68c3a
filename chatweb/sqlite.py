"""SQLite's write-ahead log, kept between requests (the default, single-host database)."""

from __future__ import annotations

import atexit
import logging
import sqlite3
from pathlib import Path

from django.db import connections

log = logging.getLogger(__name__)

_held: dict[str, sqlite3.Connection] = {}


def keep_wal(alias: str = "default") -> None:
    """Hold one idle connection to an SQLite database for as long as this process runs.

    When the last connection to a database in WAL mode closes, SQLite copies the log
    back into the database, syncs it and deletes the log; the next write creates it
    again. Django closes its connection after every request and every Channels
    database hop (CONN_MAX_AGE = 0, as Django asks under ASGI), so a quiet server paid
    for all of that on each one. Measured in process, one chat turn
    (conversations.services.conversation_send): 29.7 ms with nothing else holding the
    database, 23.0 ms with one idle connection open (closing 3.7 -> 0.8 ms, the commit
    2.2 -> 0.3 ms). This connection holds no transaction, so the log is still copied
    back as it grows (SQLite's automatic checkpoints).

    Only for long-lived processes that do not fork (daphne): a child must not inherit
    an open SQLite connection.
    """
    settings_dict = connections[alias].settings_dict
    if connections[alias].vendor != "sqlite" or alias in _held:
        return
    if connections[alias].is_in_memory_db():
        return
    held = hold(Path(settings_dict["NAME"]))
    if held is not None:
        _held[alias] = held
        atexit.register(held.close)  # a clean exit leaves no log behind (the last one out deletes it)


def hold(path: Path) -> sqlite3.Connection | None:
    """An idle connection to the database at `path` that has opened its log; None (and a
    warning) where there is no such database: it never creates one (mode=rw)."""
    uri = f"{path.resolve().as_uri()}?mode=rw"  # as_uri: a path with ? or # stays a path
    held = None
    try:
        held = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        held.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the log and its index
    except sqlite3.Error as exc:
        if held is not None:
            held.close()
        log.warning("not holding %s open (%s)", path, exc)
        return None
    return held
