"""Django's SQLite backend, with sqlite-vec loaded into every connection.

Documents' vectors live in the database itself (conversations.knowledge), so every web and
worker process searches the same index. sqlite-vec is an SQLite extension, and an
interpreter's `sqlite3` module may be built without `enable_load_extension` (pyenv's is, on
this project's CI machines). Where it is, this backend runs Django's SQLite backend on
`pysqlite3` (pysqlite3-binary: the same DB-API module built against a newer SQLite that can
load extensions) by putting it in the place of `sqlite3` before Django's backend is imported;
Django's own backend code is then used unchanged. Anything else in the process that imports
`sqlite3` afterwards gets the same module, so it speaks to the same library.
"""

from __future__ import annotations

import sqlite3
import sys

from django.core.exceptions import ImproperlyConfigured

if not hasattr(sqlite3.Connection, "enable_load_extension"):
    try:
        import pysqlite3
        import pysqlite3.dbapi2
    except ImportError:  # pragma: no cover - a platform pysqlite3-binary has no wheel for
        raise ImproperlyConfigured(
            "This Python's sqlite3 cannot load extensions, and pysqlite3 is not installed: "
            "install pysqlite3-binary, or use a Python built with loadable SQLite extensions."
        ) from None
    if "django.db.backends.sqlite3.base" in sys.modules:  # pragma: no cover
        raise ImproperlyConfigured(
            "Django's SQLite backend was imported before chatweb's: use ENGINE chatweb.sqlite_backend only."
        )
    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2

import sqlite_vec  # noqa: E402
from django.db.backends.sqlite3 import base as sqlite_base  # noqa: E402
from django.db.backends.sqlite3.base import *  # noqa: E402,F403


class DatabaseWrapper(sqlite_base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        conn = super().get_new_connection(conn_params)
        conn.enable_load_extension(True)
        try:
            sqlite_vec.load(conn)
        finally:
            conn.enable_load_extension(False)
        return conn
