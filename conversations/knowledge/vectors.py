"""A vector column in the deployment's own database: a float32 BLOB that sqlite-vec reads on
SQLite, pgvector's `vector` on PostgreSQL. Every web and worker process searches the same
index; no process keeps one of its own."""

from __future__ import annotations

import numpy as np
from django.db import models


class VectorField(models.Field):
    description = "An embedding (float32), searched by sqlite-vec or pgvector"

    def db_type(self, connection) -> str:
        return "vector" if connection.vendor == "postgresql" else "blob"

    def get_placeholder(self, value, compiler, connection) -> str:
        return "%s::vector" if connection.vendor == "postgresql" else "%s"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        return to_db(np.asarray(value, dtype=np.float32), connection.vendor)

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if isinstance(value, str):  # pgvector's text form: [0.1,0.2,...]
            return np.array([float(x) for x in value.strip("[]").split(",") if x], dtype=np.float32)
        return np.frombuffer(bytes(value), dtype=np.float32)


def to_db(vector: np.ndarray, vendor: str):
    """A vector as a query parameter: bytes for sqlite-vec, pgvector's text form otherwise."""
    vector = np.asarray(vector, dtype=np.float32)
    if vendor == "postgresql":
        return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
    return vector.tobytes()
