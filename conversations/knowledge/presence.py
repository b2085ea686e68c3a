"""Which knowledge workers are alive: each beats into one Redis sorted set (its name, the
time), so a page can say why a file waits ("no indexing worker is running") and /health
can count them. Nothing depends on it for correctness: the leases in the database do that."""

from __future__ import annotations

import time

from inference_worker.presence import client

KEY = "chatweb:knowledge-workers"
BEAT_SECONDS = 10
ALIVE_SECONDS = 3 * BEAT_SECONDS


def beat(name: str) -> None:
    now = time.time()
    pipe = client().pipeline()
    pipe.zadd(KEY, {name: now})
    pipe.zremrangebyscore(KEY, 0, now - ALIVE_SECONDS)
    pipe.execute()


def alive() -> list[str]:
    return sorted(
        m.decode() if isinstance(m, bytes) else m
        for m in client().zrangebyscore(KEY, time.time() - ALIVE_SECONDS, "+inf")
    )


def leave(name: str) -> None:
    client().zrem(KEY, name)
