"""Worker heartbeats in Redis: found by name among everything else Redis holds."""

from __future__ import annotations

import asyncio
import time

from inference_worker import presence


def beat(name: str, ttl: int, **fields) -> None:
    async def write() -> None:
        r = presence.async_client()
        try:
            await presence.beat(r, name, presence.heartbeat_payload(name=name, **fields), ttl)
        finally:
            await r.aclose()

    asyncio.run(write())


def test_live_workers_are_found_among_many_other_keys_and_the_dead_leave_the_registry(redis_server):
    r = redis_server.client
    filler = [f"chatweb:quota:tokens:{n}:2026-11-24" for n in range(3000)]
    pipe = r.pipeline(transaction=False)
    for key in filler:
        pipe.set(key, 1, ex=60)
    pipe.execute()
    try:
        beat("a@host", 8, model="m1")
        beat("b@host", 1, model="m1")  # about to die
        beat("c@host", 8, model="m2")
        assert {"a@host", "b@host", "c@host"} <= {b["name"] for b in presence.live_workers()}  # the suite's own too
        assert {b["name"] for b in presence.live_workers("m1")} == {"a@host", "b@host"}
        r.rpush("test-queue-m1", "job", "job")
        workers, waiting = presence.serving("m1", "test-queue-m1")
        assert {b["name"] for b in workers} == {"a@host", "b@host"} and waiting == 2
        time.sleep(1.2)  # b's heartbeat expires
        assert [b["name"] for b in presence.live_workers("m1")] == ["a@host"]
        assert b"b@host" not in r.smembers(presence.WORKERS_KEY)  # the reader dropped it
        beat("b@host", 8, model="m1")  # back (a restart under the same name)
        assert {b["name"] for b in presence.live_workers("m1")} == {"a@host", "b@host"}

        async def leave() -> None:
            client = presence.async_client()
            try:
                await presence.unregister(client, "a@host")
            finally:
                await client.aclose()

        asyncio.run(leave())
        assert [b["name"] for b in presence.live_workers("m1")] == ["b@host"]
        assert presence.worker_beat("a@host") is None and presence.worker_beat("b@host") is not None
    finally:
        names = [f"{n}@host" for n in "abc"]
        r.delete(*filler, "test-queue-m1", *(presence.WORKER_PREFIX + n for n in names))
        r.srem(presence.WORKERS_KEY, *names)
