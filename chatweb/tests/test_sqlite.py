"""chatweb.sqlite: the write-ahead log outlives the connections Django closes."""

from __future__ import annotations

import sqlite3

from chatweb.sqlite import hold


def _write_and_close(path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (a)")
    db.execute("INSERT INTO t VALUES (1)")
    db.close()


def test_a_held_connection_keeps_the_log_that_closing_the_last_one_deletes(tmp_path):
    path = tmp_path / "db.sqlite3"
    log = tmp_path / "db.sqlite3-wal"
    _write_and_close(path)
    assert not log.exists()  # the last connection checkpointed and deleted it
    held = hold(path)
    assert held is not None
    _write_and_close(path)
    assert log.exists()  # not the last any more: the log stays for the next write
    held.close()
    assert not log.exists()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_a_missing_database_is_not_created(tmp_path):
    assert hold(tmp_path / "nothing.sqlite3") is None
    assert not (tmp_path / "nothing.sqlite3").exists()
