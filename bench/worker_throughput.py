"""A worker's throughput by concurrency, and how fast a stop frees the engine.

    .venv/bin/python bench/worker_throughput.py [--model smollm2-135m-instruct] [--levels 1,8,16] [--tokens 128]

Starts Redis (if none answers at REDIS_URL) and one `run_worker` for the model on
the development database (run scripts/setup.sh first), then enqueues jobs the way
the web tier does and reads the worker's events from the channel layer. Jobs store
nothing (no message id). Prints a table; numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
os.environ.setdefault("SECRET_KEY_FILE", str(ROOT / "var" / "secret_key"))

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402

from conversations.jobs import TurnJob, enqueue  # noqa: E402
from inference_worker import presence  # noqa: E402
from inference_worker.jobs import Generation  # noqa: E402
from inference_worker.models import ChatModel  # noqa: E402
from inference_worker.presence import new_request_id  # noqa: E402

PROMPT = "Write a very long story about a dragon who learns to bake bread."


def ensure_redis() -> subprocess.Popen | None:
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).ping()
        return None
    except redis.ConnectionError:
        port = str(redis.connection.parse_url(settings.REDIS_URL).get("port", 6379))
        proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", port, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return proc


async def one(layer, queue: str, tokens: int, *, stop_after: int | None = None) -> dict:
    rid = new_request_id()
    channel = await layer.new_channel()
    await layer.group_add(presence.reply_group(rid), channel)
    job = TurnJob(
        user_id=None,
        generation=Generation(
            request_id=rid,
            messages=[{"role": "user", "content": PROMPT}],
            params={"max_tokens": tokens, "temperature": 0.7, "ignore_eos": True},
        ),
    )
    sent = time.perf_counter()
    await asyncio.to_thread(enqueue, job, queue)
    first = None
    deltas = 0
    stop_sent = None
    queue_wait = None
    gaps, last = [], None
    while True:
        event = await asyncio.wait_for(layer.receive(channel), 300)
        now = time.perf_counter()
        if event["event"] == "start":
            queue_wait = event["queue_wait_ms"] / 1000
        if event["event"] == "delta":
            deltas += 1
            first = first or now
            if last is not None:
                gaps.append(now - last)
            last = now
            if stop_after is not None and deltas == stop_after and stop_sent is None:
                stop_sent = time.perf_counter()
                await asyncio.to_thread(presence.request_stop, rid)
        if event["event"] in ("done", "error"):
            break
    await layer.group_discard(presence.reply_group(rid), channel)
    return {
        "ttft": (first - sent) if first else None,
        "tokens": event.get("usage", {}).get("completion_tokens", 0),
        "elapsed": time.perf_counter() - sent,
        "deltas": deltas,
        "gaps": gaps,
        "status": event.get("status", event["event"]),
        "stop_to_done": (time.perf_counter() - stop_sent) if stop_sent else None,
        "queue_wait": queue_wait,
    }


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def main() -> None:
    args = parse_args()
    model = await asyncio.to_thread(ChatModel.objects.get, name=args.model)
    await run(args, model)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--levels", default="1,8,16")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--no-start", action="store_true", help="use a worker that is already running")
    return parser.parse_args()


async def run(args: argparse.Namespace, model: ChatModel) -> None:
    redis_proc = ensure_redis()
    worker = None
    if not args.no_start:
        worker = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_worker",
                "--model",
                model.name,
                "--name",
                "bench",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 300
        while not any(w["state"] == "ready" for w in presence.live_workers(model.name)):
            if time.time() > deadline:
                raise SystemExit("no worker became ready")
            time.sleep(0.5)
        layer = get_channel_layer()
        await one(layer, model.queue, 8)  # warm-up
        print(
            f"model {model.name} ({model.dtype}), {args.tokens} output tokens per request, "
            f"machine: {os.cpu_count()} cores"
        )
        print(
            f"{'concurrency':>11} {'tok/s':>8} {'x one':>6} {'ttft p50':>9} {'ttft p95':>9} "
            f"{'gap p95':>8} {'queue p50':>9} {'deltas/req':>10}"
        )
        base = None
        for level in [int(x) for x in args.levels.split(",")]:
            started = time.perf_counter()
            results = await asyncio.gather(*(one(layer, model.queue, args.tokens) for _ in range(level)))
            wall = time.perf_counter() - started
            tps = sum(r["tokens"] for r in results) / wall
            base = base or tps
            ttfts = [r["ttft"] for r in results if r["ttft"]]
            gaps = [g for r in results for g in r["gaps"]]
            print(
                f"{level:11d} {tps:8.1f} {tps / base:6.2f} "
                f"{pct(ttfts, 0.5) * 1000:8.0f}ms {pct(ttfts, 0.95) * 1000:8.0f}ms "
                f"{pct(gaps, 0.95) * 1000:7.0f}ms {pct([r['queue_wait'] or 0 for r in results], 0.5) * 1000:7.0f}ms "
                f"{statistics.mean(r['deltas'] for r in results):10.1f}"
            )
        stops = [await one(layer, model.queue, 2000, stop_after=5) for _ in range(5)]
        latencies = [s["stop_to_done"] * 1000 for s in stops if s["stop_to_done"]]
        await asyncio.sleep(presence.HEARTBEAT_SECONDS + 0.5)  # a fresh heartbeat
        beat = presence.live_workers(model.name)[0]
        print(
            f"stop -> done (engine aborted, partial kept): p50 {pct(latencies, 0.5):.0f} ms, "
            f"max {max(latencies):.0f} ms over {len(latencies)} stops; "
            f"engine unfinished after: {beat['engine_unfinished']}"
        )
    finally:
        if worker is not None:
            os.killpg(worker.pid, 15)
            worker.wait(60)
        if redis_proc is not None:
            redis_proc.terminate()


if __name__ == "__main__":
    asyncio.run(main())
