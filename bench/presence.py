"""Finding a model's live workers, whatever else Redis holds.

    .venv/bin/python bench/presence.py [--calls 300]

Every chat turn and API call asks which workers serve its model (and how long its
queue is) before it counts or stores anything; the socket watchdog and the health page
ask too. Redis also holds every active user's quota counters, Celery's keys and the
stop marks, so the lookup is timed with 0 to 100,000 other keys beside 4 workers:
- "registry": chatweb's lookup (inference_worker.presence.serving: one script that
  reads the registered names' heartbeats, and the queue's length, in one round trip);
- "SCAN (before)": what chatweb did until 2026-11-24, kept here as the reference:
  SCAN for the heartbeat keys, MGET them, then LLEN the queue.
Prints the p50 and p95 per lookup and their ratio, and writes bench/results/presence.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

WORKERS = 4
QUEUE = "bench-presence-queue"


def scan_lookup(model: str) -> tuple[list[dict], int]:
    """The reference: chatweb's lookup before the registry."""
    from inference_worker import presence

    r = presence.client()
    keys = list(r.scan_iter(match=f"{presence.WORKER_PREFIX}*", count=200))
    beats = [json.loads(raw) for raw in (r.mget(keys) if keys else []) if raw is not None]
    beats = sorted((b for b in beats if b.get("model") == model), key=lambda b: b["updated"], reverse=True)
    return beats, (int(r.llen(QUEUE)) if beats else 0)


def timed(lookup, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        workers, _ = lookup()
        times.append((time.perf_counter() - started) * 1000)
        assert len(workers) == WORKERS, workers
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    common.setup_django("presence")
    from inference_worker import presence

    procs = common.Processes()
    procs.redis()
    try:
        r = presence.client()

        async def register() -> None:
            client = presence.async_client()
            for n in range(WORKERS):
                payload = presence.heartbeat_payload(name=f"w{n}", model="m", state="ready")
                await presence.beat(client, f"w{n}@bench", payload, 3600)
            await client.aclose()

        asyncio.run(register())
        r.rpush(QUEUE, "job")
        rows, filled = [], 0
        for other_keys in (0, 1_000, 10_000, 100_000):
            pipe = r.pipeline(transaction=False)
            for n in range(filled, other_keys):  # shaped like the quota counters
                pipe.set(f"chatweb:quota:tokens:{n}:2026-11-24", n)
            pipe.execute()
            filled = other_keys
            registry = timed(lambda: presence.serving("m", QUEUE), args.calls)
            scan = timed(lambda: scan_lookup("m"), args.calls)
            rows.append(
                {
                    "other keys": other_keys,
                    "registry p50 ms": common.pct(registry, 0.5),
                    "registry p95 ms": common.pct(registry, 0.95),
                    "SCAN (before) p50 ms": common.pct(scan, 0.5),
                    "SCAN (before) p95 ms": common.pct(scan, 0.95),
                    "SCAN / registry, p50": common.pct(scan, 0.5) / common.pct(registry, 0.5),
                }
            )
        common.print_table(
            f"A model's live workers and queue, {WORKERS} workers, {args.calls} lookups each ({common.machine()})",
            list(rows[0]),
            rows,
        )
        print(f"\nwrote {common.write_csv('presence', rows)}")
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
