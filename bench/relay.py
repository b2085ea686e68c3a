"""How many tokens a second one daphne relays from workers to browsers.

    .venv/bin/python bench/relay.py [--streams 8,32,64,128,256] [--rate 100] [--budget 500] [--sources 2]

No model: a SYNTHETIC token source (this benchmark's own, never used by a test or the
service) stands in for the engine. Everything after it is the real path: the worker's
publisher (EngineHost.publish and the Coalescer that batches a request's deltas),
Redis, the pub/sub channel layer, daphne, ChatConsumer, and N signed-in websocket
clients, one per answer, each following a queued answer of its own conversation as
the chat page does.

Two modes. "1 token per message": no coalescing, as fast as the sources can, which
measures what one message costs the web tier. "chatweb": like an engine, each source
emits one token per stream per step at --rate steps a second, and the worker's
publisher coalesces them as it does by default (30 ms, and STREAM_PUBLISH_BUDGET
messages a second per worker). Every client checks its text against what was sent
(nothing dropped, nothing out of order). Prints offered and delivered tokens/s,
messages/s, how late the last token of a stream arrives against the source's own
schedule (p95), and daphne's CPU per 1,000 tokens; writes bench/results/relay.csv
and relay.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

STREAM_INTERVAL = 0.03  # the worker's default (STREAM_INTERVAL_MS)
WORDS = [" the", " dragon", " baked", " bread", " in", " a", " stone", " oven", ",", " and", " it", " rose", "."]


def expected_text(stream: int, tokens: int) -> str:
    return "".join(WORDS[(stream * 7 + i) % len(WORDS)] for i in range(tokens))


# --- the synthetic source (a child process per source) ------------------------------------


def run_source(
    request_ids: list[str], first_stream: int, tokens: int, interval: float, budget: float, rate: float, go: str
) -> None:
    """Publish `tokens` tokens to each reply group like an engine: one token per stream per
    step, `rate` steps a second (0: as fast as it can), through the worker's publisher."""
    common.setup_django("relay")
    from channels.layers import get_channel_layer

    from inference_worker import presence
    from inference_worker.engine import Coalescer, EngineHost, EngineSpec
    from inference_worker.models import ChatModel

    spec = EngineSpec.from_model(ChatModel.objects.get(name="relay"))

    async def main() -> None:
        host = EngineHost(
            spec,
            worker_name=f"synthetic-source-{first_stream}",
            queue="relay",
            stream_interval=interval,
            publish_budget=budget,
        )
        # What EngineHost._startup sets up, without loading an engine: the publisher and
        # the heartbeat (the sockets' watchdogs check that their worker is alive).
        host._layer = get_channel_layer()
        host._redis = presence.async_client()
        host.state = "ready"
        heartbeat = asyncio.create_task(host._heartbeat_loop())
        loop = asyncio.get_running_loop()
        while not os.path.exists(go):
            await asyncio.sleep(0.005)
        streams = []
        for rid in request_ids:
            await host.reply(rid, {"event": "start", "worker": host.worker_name, "model": "relay"})
            host.coalescers[rid] = Coalescer(host, rid, host.publish_interval)  # as EngineHost._generate does
            streams.append(host.coalescers[rid])
        started = loop.time()
        for step in range(tokens):
            for i, coalescer in enumerate(streams):
                await coalescer.push(WORDS[((first_stream + i) * 7 + step) % len(WORDS)], "")
            delay = started + (step + 1) / rate - loop.time() if rate else 0
            await asyncio.sleep(max(0.0, delay))  # lets the coalescers' timers run
        for coalescer in streams:
            await coalescer.flush()
            await host.reply(coalescer.request_id, {"event": "done", "status": "done", "finish_reason": "length"})
        heartbeat.cancel()

    asyncio.run(main())


# --- the benchmark ------------------------------------------------------------------------------


def build(streams: int) -> tuple[str, list[int], list[str]]:
    """`streams` conversations, each with a queued answer for one client to follow."""
    from accounts.models import Role, User
    from conversations.models import Conversation, Message
    from inference_worker.models import ChatModel
    from inference_worker.presence import new_request_id

    user = User.objects.filter(email="relay@example.com").first() or User.objects.create_user(
        "relay@example.com", "x" * 20, role=Role.USER
    )
    model = ChatModel.objects.get_or_create(
        name="relay", defaults={"display_name": "Relay", "path": "/none", "queue": "relay"}
    )[0]
    conversation_ids, request_ids = [], []
    for i in range(streams):
        conversation = Conversation.objects.create(owner=user, model=model, title=f"relay {i}")
        question = Message.objects.create(conversation=conversation, role="user", content="Go.")
        rid = new_request_id()
        Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            status="queued",
            request_id=rid,
            model_name=model.name,
        )
        conversation_ids.append(conversation.pk)
        request_ids.append(rid)
    return common.session_cookie(user), conversation_ids, request_ids


async def client(address: str, cookie: str, conversation_id: int, ready: asyncio.Event, counts: dict) -> dict:
    async with common.chat_socket(address, cookie, conversation_id, max_size=2**24, open_timeout=60) as ws:
        while json.loads(await ws.recv()).get("type") != "resume":
            pass
        counts["following"] += 1
        if counts["following"] == counts["streams"]:
            ready.set()
        text, seqs, messages, first, last = [], [], 0, None, None
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if event["type"] == "delta":
                now = time.perf_counter()
                first = first or now
                last = now
                messages += 1
                seqs.append(event["seq"])
                text.append(event.get("content", ""))
            elif event["type"] in ("done", "error"):
                return {"text": "".join(text), "seqs": seqs, "messages": messages, "first": first, "last": last}


def run_level(
    args,
    procs: common.Processes,
    address: str,
    daphne_pid: int,
    streams: int,
    interval: float,
    budget: float,
    rate: float,
) -> dict:
    import psutil

    cookie, conversation_ids, request_ids = build(streams)
    go = common.ROOT / "var" / "bench-relay.go"
    go.unlink(missing_ok=True)
    sources = []
    per = -(-streams // args.sources)
    for k in range(0, streams, per):
        job = {
            "request_ids": request_ids[k : k + per],
            "first_stream": k,
            "tokens": args.tokens,
            "interval": interval,
            "budget": budget,
            "rate": rate,
            "go": str(go),
        }
        sources.append(procs.start(f"source-{k}", [sys.executable, __file__, "--source-job", json.dumps(job)]))
    from inference_worker import presence

    common.wait_for(lambda: len(presence.live_workers("relay")) >= len(sources), 60, "the sources' heartbeats")

    async def main() -> list[dict]:
        ready = asyncio.Event()
        counts = {"following": 0, "streams": streams}
        tasks = []
        for cid in conversation_ids:  # connect in groups of 50, as a crowd arrives
            tasks.append(asyncio.create_task(client(address, cookie, cid, ready, counts)))
            if len(tasks) % 50 == 0:
                await asyncio.sleep(0.5)
        await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(common_resync_wait())
        daphne = psutil.Process(daphne_pid)
        cpu0 = sum(daphne.cpu_times()[:2])
        go.touch()
        went = time.perf_counter()
        results = await asyncio.gather(*tasks)
        cpu1 = sum(daphne.cpu_times()[:2])
        return results, cpu1 - cpu0, went

    results, cpu, went = asyncio.run(main())
    for proc in sources:
        proc.wait(60)
    go.unlink(missing_ok=True)
    bad = 0
    for i, r in enumerate(results):
        if r["text"] != expected_text(i, args.tokens) or r["seqs"] != sorted(r["seqs"]):
            bad += 1
    end = max(r["last"] for r in results if r["last"])
    wall = end - went
    tokens = (streams - bad) * args.tokens  # only what arrived right counts
    messages = sum(r["messages"] for r in results)
    # How late each stream's last token arrived against the source's own schedule.
    lags = [r["last"] - went - args.tokens / rate for r in results] if rate else None
    return {
        "mode": f"chatweb ({interval * 1000:.0f} ms, {budget:.0f}/s)" if interval else "1 token per message",
        "streams": streams,
        "offered_tokens_per_s": round(streams * rate) if rate else "max",
        "tokens_per_s": round(tokens / wall),
        "messages_per_s": round(messages / wall),
        "tokens_per_message": round(tokens / messages, 1),
        "end_lag_p95_ms": round(common.pct(lags, 0.95) * 1000) if lags else None,
        "daphne_cpu_ms_per_1k_tokens": round(cpu * 1000 / (tokens / 1000), 1),
        "daphne_cpu_share": round(cpu / wall, 2),
        "streams_wrong": bad,
    }


def common_resync_wait() -> float:
    from conversations.follower import RESYNC_SECONDS

    return RESYNC_SECONDS + 0.5  # every client's resume window has closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast-streams", default="1,8,32", help="streams for the one-token-per-message runs")
    parser.add_argument("--streams", default="8,32,64,128,256", help="streams for the engine-like runs")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens/s per stream in the engine-like runs")
    parser.add_argument("--tokens", type=int, default=1000, help="tokens per stream")
    parser.add_argument("--budget", type=float, default=500, help="each source's STREAM_PUBLISH_BUDGET")
    parser.add_argument("--sources", type=int, default=2, help="source processes (workers)")
    parser.add_argument("--source-job", help=argparse.SUPPRESS)  # run as one source process (JSON)
    args = parser.parse_args()
    if args.source_job:
        return run_source(**json.loads(args.source_job))
    common.fresh_database(common.setup_django("relay"))
    build(0)  # the model row the sources read
    procs = common.Processes()
    try:
        procs.redis()
        daphne, address = procs.daphne()
        rows = []
        for streams in [int(s) for s in args.fast_streams.split(",")]:
            rows.append(run_level(args, procs, address, daphne.pid, streams, 0.0, 0.0, 0.0))
            print(rows[-1], flush=True)
        for streams in [int(s) for s in args.streams.split(",")]:
            rows.append(run_level(args, procs, address, daphne.pid, streams, STREAM_INTERVAL, args.budget, args.rate))
            print(rows[-1], flush=True)
    finally:
        procs.stop()
    columns = list(rows[0])
    common.print_table(f"Relay through one daphne ({common.machine()})", columns, rows)
    common.write_csv("relay", rows)
    paced = [r for r in rows if r["offered_tokens_per_s"] != "max"]
    series = {
        "offered": ([r["streams"] for r in paced], [r["offered_tokens_per_s"] for r in paced]),
        "delivered": ([r["streams"] for r in paced], [r["tokens_per_s"] for r in paced]),
    }
    title = f"One daphne, {args.rate:.0f} tok/s per stream, {args.sources} sources, budget {args.budget:.0f}/s each"
    common.plot("relay", title, series, "streams (websockets)", "tokens/s", logx=True)
    if any(r["streams_wrong"] for r in rows):
        raise SystemExit("some streams arrived wrong")


if __name__ == "__main__":
    main()
