"""What web and workers share through Redis besides Celery: heartbeats and stops.

- `chatweb:worker:<name>`: a worker's heartbeat (JSON), rewritten every
  HEARTBEAT_SECONDS with a TTL of HEARTBEAT_TTL: a worker that dies disappears.
  While it loads a model the TTL is LOADING_TTL: building an engine holds the GIL
  for seconds at a time (the tokenizer alone: 1.2 s on an idle 2-vCPU machine,
  several on a busy one), and a live worker must not look dead meanwhile.
- `chatweb:workers`: the names of the workers that beat (a set). Readers look the
  heartbeats up by name, and drop a name whose heartbeat has expired.
- `chatweb:abort` (pub/sub): request ids to abort; the worker holding one aborts it
  inside its engine.
- `chatweb:sync` (pub/sub): request ids whose worker should publish a snapshot of
  what it has streamed so far (a socket reconnected mid-answer).
- `chatweb:outcome:<request_id>`: how an answer ended and its whole text, for
  OUTCOME_TTL seconds, written just before its end is published: a reader that lost
  some of its events on the way (Redis restarted meanwhile) mends its stream from it.
- `chatweb:stop:<request_id>`: set with the abort, so a request still queued in
  Celery is dropped when a worker picks it up.
- Reply groups `reply.<request_id>` on the channel layer carry the events of one
  answer; `conversation.<id>` carries a conversation's own events (its title).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from typing import Any

import redis
from django.conf import settings

HEARTBEAT_SECONDS = 2.0
HEARTBEAT_TTL = 8  # three missed beats and a margin
LOADING_TTL = 30
WORKER_PREFIX = "chatweb:worker:"
WORKERS_KEY = "chatweb:workers"
ABORT_CHANNEL = "chatweb:abort"
SYNC_CHANNEL = "chatweb:sync"
STOP_PREFIX = "chatweb:stop:"
STOP_TTL = 3600
OUTCOME_PREFIX = "chatweb:outcome:"
OUTCOME_TTL = 120

_client: redis.Redis | None = None
_live: Any = None  # LIVE_SCRIPT, registered on client()

# The heartbeats of the registered workers, in one round trip; a name whose heartbeat
# expired leaves the set. (Lua reads keys named at run time: one Redis, not a Cluster.)
LIVE_SCRIPT = """
local beats = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local beat = redis.call('GET', ARGV[1] .. name)
  if beat then beats[#beats + 1] = beat else redis.call('SREM', KEYS[1], name) end
end
return beats
"""


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10
        )
    return _client


def async_client():
    """A redis.asyncio client for a worker's engine loop (heartbeats, aborts)."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, health_check_interval=10)


def new_request_id() -> str:
    """An answer's id: it names its reply group, its stop mark and its engine request."""
    return uuid.uuid4().hex


def reply_group(request_id: str) -> str:
    return f"reply.{request_id}"


def conversation_group(conversation_id: int) -> str:
    """Events about a conversation rather than one answer (its new title)."""
    return f"conversation.{conversation_id}"


LISTENING_PREFIX = "listening."
_listening: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


async def keep_layer_listening(layer) -> None:
    """Hold one subscription on this event loop's channel layer for as long as it runs.

    channels-redis's pub/sub reader (4.3) reads messages as they come only while its
    process subscribes to something; with nothing subscribed it sleeps 100 ms between
    looks. A web process with no socket open (an API client on its own, or the first
    visitor) subscribed a reply group while its reader slept, and the answer's first
    event waited for the reader to wake: up to 100 ms, 9-17 ms at p50 for the API's
    first chunk (docs/PERFORMANCE.md). A channel of our own that nothing is ever sent
    to keeps the reader reading; redis-py subscribes it again after a reconnect. (While
    Redis is away, the awake reader logs its failed reads once a second.) Remembered
    per loop: a layer flushed on a running loop would lose it until the loop ends;
    chatweb never flushes one.
    """
    loop = asyncio.get_running_loop()
    if loop in _listening:
        return
    _listening.add(loop)
    try:
        await layer.new_channel(LISTENING_PREFIX)
    except BaseException:
        _listening.discard(loop)  # Redis away: the next caller tries again
        raise


def live_workers(model: str | None = None) -> list[dict[str, Any]]:
    """Heartbeats of the workers alive now (optionally for one model), newest first.

    One round trip whatever else Redis holds: the registry names them (a SCAN for
    their keys walked the whole keyspace: every user's quota counters, Celery's keys,
    the stop marks; bench/presence.py)."""
    return _beats(_lookup()(keys=[WORKERS_KEY], args=[WORKER_PREFIX]), model)


def serving(model: str, queue: str) -> tuple[list[dict[str, Any]], int]:
    """A model's live workers and the jobs waiting in its Celery queue (that no worker has
    taken yet), in one round trip."""
    lookup = _lookup()
    pipe = client().pipeline(transaction=False)
    lookup(keys=[WORKERS_KEY], args=[WORKER_PREFIX], client=pipe)
    pipe.llen(queue)
    raw, waiting = pipe.execute()
    return _beats(raw, model), int(waiting)


def _lookup():
    global _live
    if _live is None:
        _live = client().register_script(LIVE_SCRIPT)
    return _live


def _beats(raw: list[bytes], model: str | None) -> list[dict[str, Any]]:
    beats = [json.loads(b) for b in raw]
    beats = [b for b in beats if model is None or b.get("model") == model]
    return sorted(beats, key=lambda b: b.get("updated", 0), reverse=True)


async def beat(r, name: str, payload: str, ttl: int) -> None:
    """Write a worker's heartbeat (`r`: a redis.asyncio client) and register its name."""
    async with r.pipeline(transaction=False) as pipe:
        pipe.set(WORKER_PREFIX + name, payload, ex=ttl)
        pipe.sadd(WORKERS_KEY, name)
        await pipe.execute()


async def unregister(r, name: str) -> None:
    """A worker that shuts down: gone at once rather than when its heartbeat expires."""
    async with r.pipeline(transaction=False) as pipe:
        pipe.delete(WORKER_PREFIX + name)
        pipe.srem(WORKERS_KEY, name)
        await pipe.execute()


def worker_beat(name: str) -> dict[str, Any] | None:
    """A worker's last heartbeat, or None if it has none (dead, or gone)."""
    raw = client().get(WORKER_PREFIX + name)
    return json.loads(raw) if raw else None


def uptime() -> int:
    """Seconds since Redis started (it keeps nothing across a restart here)."""
    return int(client().info("server").get("uptime_in_seconds", 1 << 30))


def just_restarted() -> bool:
    """Redis started less than a heartbeat's TTL ago: a worker with no heartbeat may be
    alive and not have beaten since."""
    return uptime() < HEARTBEAT_TTL


def request_stop(request_id: str) -> None:
    """Stop a request wherever it is: queued (the key) or running (the broadcast)."""
    r = client()
    r.set(STOP_PREFIX + request_id, "1", ex=STOP_TTL)
    r.publish(ABORT_CHANNEL, request_id)


async def keep_outcome(
    r, request_id: str, final: dict[str, Any], content: str, reasoning: str, arguments: str = ""
) -> None:
    """Keep how an answer ended, and its text, for a reader that lost events (`r`: redis.asyncio)."""
    outcome = {"final": final, "content": content, "reasoning": reasoning, "arguments": arguments}
    await r.set(OUTCOME_PREFIX + request_id, json.dumps(outcome), ex=OUTCOME_TTL)


def outcome(request_id: str) -> dict[str, Any] | None:
    """How an answer ended and its whole text (None while it runs, or OUTCOME_TTL after)."""
    raw = client().get(OUTCOME_PREFIX + request_id)
    return json.loads(raw) if raw else None


def delta_seq(event: dict[str, Any]) -> int:
    """A reply event's place among its answer's deltas (0 where it has none)."""
    seq = event.get("seq")
    return seq if isinstance(seq, int) else 0


def deltas_sent(event: dict[str, Any]) -> int:
    """On an answer's end: how many deltas its worker sent (a reader that got fewer lost some)."""
    deltas = event.get("deltas")
    return deltas if isinstance(deltas, int) else 0


def request_snapshot(request_id: str) -> None:
    client().publish(SYNC_CHANNEL, request_id)


def heartbeat_payload(**fields: Any) -> str:
    return json.dumps({**fields, "updated": time.time()})
