"""Idle sockets and streaming chats at once, on one daphne and one worker.

    .venv/bin/python bench/load.py [--idle 500] [--chats 32] [--tokens 128] [--dtype float32]

Opens --idle signed-in websockets that sit on their chat pages, then runs --chats
chats at once through the real worker and engine (SmolLM2), twice: first with no
idle sockets open, then with all of them. Reports daphne's (and Redis's) memory per
idle connection, time to first token p50 / p95 with and without the idle crowd, and
checks every streamed answer against the stored message: the deltas in order, with
nothing dropped, nothing repeated, nothing out of place. Writes
bench/results/load.csv and load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PROMPTS = [
    "Write a short story about a dragon who learns to bake bread.",
    "Explain how a bicycle stays upright.",
    "List ten facts about the moon.",
    "Describe a walk through a busy market.",
]
MODEL = "bench-load-smollm2"


async def open_idle(address: str, cookie: str, conversation_ids: list[int]) -> list:
    async def one(cid: int):
        ws = await common.chat_socket(address, cookie, cid, open_timeout=120)
        assert json.loads(await ws.recv())["type"] == "ready"
        return ws

    sockets = []
    for start in range(0, len(conversation_ids), 50):  # 50 handshakes at a time, as a crowd arriving
        sockets += await asyncio.gather(*(one(cid) for cid in conversation_ids[start : start + 50]))
    return sockets


async def chat(address: str, cookie: str, cid: int, prompt: str, tokens: int) -> dict:
    async with common.chat_socket(address, cookie, cid, open_timeout=120) as ws:
        await ws.recv()  # "ready"
        sent = time.perf_counter()
        params = {"max_tokens": tokens, "ignore_eos": True}  # every answer the same length
        await ws.send(json.dumps({"type": "send", "content": prompt, "params": params}))
        first, text, seqs, message_id = None, [], [], None
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 600))
            if event["type"] == "queued":
                message_id = event["message_id"]
            elif event["type"] == "delta":
                first = first or time.perf_counter()
                seqs.append(event["seq"])
                text.append(event.get("content", ""))
            elif event["type"] in ("done", "error"):
                return {
                    "message_id": message_id,
                    "ttft": (first - sent) if first else None,
                    "text": "".join(text),
                    "seqs": seqs,
                    "status": event.get("status", event["type"]),
                }


def check(results: list[dict]) -> tuple[int, int]:
    """(answers stored exactly as streamed, answers that differ or failed)."""
    from conversations.models import Message

    stored = {m.pk: m for m in Message.objects.filter(pk__in=[r["message_id"] for r in results])}
    good = 0
    for r in results:
        message = stored.get(r["message_id"])
        in_order = r["seqs"] == list(range(len(r["seqs"])))
        if message and message.status == "done" and r["status"] == "done" and message.content == r["text"] and in_order:
            good += 1
    return good, len(results) - good


def rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--chats", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32", help="float32 batches best on AVX2 CPUs")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))  # daphne inherits it
    common.fresh_database(common.setup_django("load"))
    from inference_worker.engine import cpu_engine_env

    cpu_engine_env()  # the worker started below inherits it
    import redis
    from django.conf import settings

    from conversations.models import Conversation
    from inference_worker import presence
    from inference_worker.models import ChatModel

    user = common.unlimited_user("load@example.com")
    model = ChatModel.objects.create(
        name=MODEL,
        display_name="SmolLM2 (load)",
        path=str(common.ROOT / "var" / "models" / "smollm2-135m-instruct"),
        queue=MODEL,
        dtype=args.dtype,
        context_length=2048,
        max_num_seqs=args.chats,
        cpu_kv_cache_gib=1.0,
        enforce_eager=True,
    )
    cookie = common.session_cookie(user)
    idle_ids = [Conversation.objects.create(owner=user, model=model, title=f"idle {i}").pk for i in range(args.idle)]

    procs = common.Processes()
    rows = []
    try:
        procs.redis()
        daphne, address = procs.daphne()
        procs.worker(MODEL, "load")
        common.wait_for(lambda: any(w["state"] == "ready" for w in presence.live_workers(MODEL)), 600, "worker", 1)
        r = redis.Redis.from_url(settings.REDIS_URL)

        def new_conversations(label: str) -> list[int]:
            return [
                Conversation.objects.create(owner=user, model=model, title=f"{label} {i}", title_auto=False).pk
                for i in range(args.chats)
            ]

        async def chats(label: str) -> dict:
            conversations = await asyncio.to_thread(new_conversations, label)
            started = time.perf_counter()
            results = await asyncio.gather(
                *(
                    chat(address, cookie, cid, PROMPTS[i % len(PROMPTS)], args.tokens)
                    for i, cid in enumerate(conversations)
                )
            )
            wall = time.perf_counter() - started
            good, bad = await asyncio.to_thread(check, results)
            ttfts = [x["ttft"] for x in results if x["ttft"] is not None]
            return {
                "idle_sockets": label,
                "chats": args.chats,
                "ttft_p50_ms": round(common.pct(ttfts, 0.5) * 1000),
                "ttft_p95_ms": round(common.pct(ttfts, 0.95) * 1000),
                "seconds": round(wall, 1),
                "stored_as_streamed": good,
                "wrong": bad,
            }

        async def run() -> None:
            await chats("warm-up")  # the engine's first batch of this size, daphne's first imports
            rows.append(await chats("0"))
            print(rows[-1], flush=True)
            daphne_before, redis_before = rss(daphne.pid), r.info("memory")["used_memory"]
            opened = time.perf_counter()
            sockets = await open_idle(address, cookie, idle_ids)
            opening = time.perf_counter() - opened
            await asyncio.sleep(2)
            daphne_after, redis_after = rss(daphne.pid), r.info("memory")["used_memory"]
            rows.append(await chats(str(len(sockets))))
            rows[-1]["open_seconds"] = round(opening, 1)
            rows[-1]["daphne_kib_per_idle"] = round((daphne_after - daphne_before) / len(sockets) / 1024, 1)
            rows[-1]["redis_kib_per_idle"] = round((redis_after - redis_before) / len(sockets) / 1024, 2)
            print(rows[-1], flush=True)
            alive = 0
            for ws in sockets:  # every idle socket is still open and answers
                await ws.send(json.dumps({"type": "ping"}))
                alive += json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "pong"
                await ws.close()
            rows[-1]["idle_still_answering"] = alive

        asyncio.run(run())
    finally:
        procs.stop()
    rows[0].update(open_seconds=None, daphne_kib_per_idle=None, redis_kib_per_idle=None, idle_still_answering=None)
    common.print_table(
        f"{args.chats} chats with and without {args.idle} idle sockets ({common.machine()})", list(rows[1]), rows
    )
    common.write_csv("load", rows)
    common.plot(
        "load",
        f"Time to first token, {args.chats} chats at once",
        {
            "p50": ([int(r["idle_sockets"]) for r in rows], [r["ttft_p50_ms"] for r in rows]),
            "p95": ([int(r["idle_sockets"]) for r in rows], [r["ttft_p95_ms"] for r in rows]),
        },
        "idle websockets open",
        "ms",
    )
    if any(r["wrong"] for r in rows):
        raise SystemExit("some answers were not stored as they were streamed")


if __name__ == "__main__":
    main()
