"""What chatweb costs between the engine and its users: the same model and engine
settings, the same prompt and answer length, served four ways in one run.

    .venv/bin/python bench/serving.py [--levels 1,8,32] [--tokens 128] [--dtype bfloat16] [--requests 8]

1. raw: vLLM's AsyncLLM in process, built by chatweb's own EngineHost (the ceiling);
2. vllm: vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`),
   driven by the official `openai` client, streaming (the peer);
3. api: chatweb's /api/chat/completions (daphne, Redis, one Celery worker), driven by
   the same client code;
4. ws: chatweb's chat websocket, one conversation per concurrent chat.

Every request asks for exactly --tokens tokens (`ignore_eos`). For each level it
prints output tokens/s, time to first token p50 / p95, the inter-chunk gap p95, and
the ratios to raw and to vLLM's server, and the CPU seconds per 1,000 tokens spent
by the engine, by everything serving it and by the client; writes bench/results/serving-<dtype>.csv
and .png. Ratios are the result: absolute numbers are this machine's.
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

PROMPT = "Write a very long story about a dragon who learns to bake bread."
MODEL = "bench-smollm2"
SYSTEMS = ["raw", "vllm", "api", "ws"]


def model_fields(args) -> dict:
    return {
        "display_name": "SmolLM2 (benchmark)",
        "path": str(common.ROOT / "var" / "models" / "smollm2-135m-instruct"),
        "queue": MODEL,
        "prompt_format": "chat_template",
        "dtype": args.dtype,
        "context_length": 2048,
        "default_temperature": 0.7,
        "default_max_tokens": args.tokens,
        "max_num_seqs": max(args.level_list),
        "cpu_kv_cache_gib": 1.0,
        "enforce_eager": True,
    }


def summarize(system: str, level: int, results: list[dict], wall: float, cpu: dict[str, float]) -> dict:
    tokens = sum(r["tokens"] for r in results)
    per_1k = {f"{role}_cpu_s_per_1k": round(seconds * 1000 / tokens, 2) for role, seconds in cpu.items()}
    ttfts = [r["ttft"] for r in results if r["ttft"] is not None]
    gaps = [g for r in results for g in r["gaps"]]
    return {
        "system": system,
        "concurrency": level,
        "requests": len(results),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(common.pct(ttfts, 0.5) * 1000, 1),
        "ttft_p95_ms": round(common.pct(ttfts, 0.95) * 1000, 1),
        "gap_p95_ms": round(common.pct(gaps, 0.95) * 1000, 1),
        "chunks_per_request": round(sum(len(r["gaps"]) + 1 for r in results) / len(results), 1),
        **per_1k,
    }


class Timer:
    """Time to first token and the gaps between the chunks of one streamed answer."""

    def __init__(self) -> None:
        self.sent = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.gaps: list[float] = []

    def chunk(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.gaps.append(now - self.last)
        self.last = now

    def result(self, tokens: int) -> dict:
        return {"ttft": None if self.first is None else self.first - self.sent, "gaps": self.gaps, "tokens": tokens}


async def measure(system: str, args, one, meter: common.CpuMeter) -> list[dict]:
    """Each level's requests at once, repeated until there are --requests of them."""
    await one()  # warm-up
    rows = []
    for level in args.level_list:
        results = []
        before = meter.read()
        started = time.perf_counter()
        for _ in range(max(1, args.requests // level)):
            results += await asyncio.gather(*(one() for _ in range(level)))
        wall = time.perf_counter() - started
        cpu = {role: seconds - before[role] for role, seconds in meter.read().items()}
        rows.append(summarize(system, level, results, wall, cpu))
        print(rows[-1], flush=True)
    return rows


# --- 1. the raw engine (a child process: its own engine, freed when it exits) -----------------


def raw_child(args) -> None:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    from inference_worker.engine import EngineHost, EngineSpec
    from inference_worker.models import ChatModel
    from inference_worker.presence import new_request_id

    host = EngineHost(EngineSpec.from_model(ChatModel.objects.get(name=MODEL)), worker_name="raw", queue="raw")
    engine = host._build_engine()  # what the worker builds, with the same arguments
    prompt = host.builder.build(
        history=[{"role": "user", "content": PROMPT}], system_prompt="", max_tokens=args.tokens, options={}
    )
    sampling = SamplingParams(
        temperature=0.7, max_tokens=args.tokens, ignore_eos=True, output_kind=RequestOutputKind.DELTA
    )

    async def one() -> dict:
        timer = Timer()
        tokens = 0
        async for output in engine.generate({"prompt_token_ids": prompt.token_ids}, sampling, new_request_id()):
            if output.outputs[0].token_ids:
                tokens += len(output.outputs[0].token_ids)
                timer.chunk()
        return timer.result(tokens)

    # In process: the frontend and the loop reading it are one process ("serving").
    rows = asyncio.run(measure("raw", args, one, common.CpuMeter([os.getpid()])))
    Path(args.raw_out).write_text(json.dumps(rows))
    engine.shutdown()


# --- 2 and 3. an OpenAI-compatible server through the official client ---------------------------


async def openai_rows(system: str, base_url: str, key: str, model: str, args, meter) -> list[dict]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)

    async def one() -> dict:
        timer = Timer()
        tokens = 0
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=args.tokens,
            temperature=0.7,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                timer.chunk()
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return timer.result(tokens)

    try:
        return await measure(system, args, one, meter)
    finally:
        await client.close()


def vllm_rows(args, procs: common.Processes) -> list[dict]:
    import httpx

    from inference_worker.models import ChatModel

    model = ChatModel.objects.get(name=MODEL)
    port = common.free_port()
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model.path,
        "--served-model-name",
        MODEL,
        "--dtype",
        model.dtype,
        "--max-model-len",
        str(model.context_length),
        "--max-num-seqs",
        str(model.max_num_seqs),
        "--kv-cache-memory-bytes",
        str(int(model.cpu_kv_cache_gib * 2**30)),
        "--enforce-eager",
        "--seed",
        "0",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--uvicorn-log-level",
        "warning",
    ]
    server = procs.start("vllm-server", argv)

    def up() -> bool:
        if server.poll() is not None:
            raise SystemExit(f"vLLM's server exited; see {procs.logs / 'vllm-server.log'}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    common.wait_for(up, 600, "vLLM's OpenAI server", interval=1)
    try:
        meter = common.CpuMeter([server.pid])
        return asyncio.run(openai_rows("vllm", f"http://127.0.0.1:{port}/v1", "none", MODEL, args, meter))
    finally:
        procs.stop_one(server)


# --- 3 and 4. chatweb -----------------------------------------------------------------------------


def chatweb_rows(args, procs: common.Processes) -> list[dict]:
    from accounts.services import api_key_create
    from conversations.models import Conversation
    from inference_worker import presence
    from inference_worker.models import ChatModel

    user = common.unlimited_user("serving@example.com")
    key = api_key_create(user=user, name="bench")[1]
    model = ChatModel.objects.get(name=MODEL)
    _, address = procs.daphne()
    procs.worker(MODEL, "bench")
    common.wait_for(lambda: any(w["state"] == "ready" for w in presence.live_workers(MODEL)), 600, "the worker", 1)
    meter = common.CpuMeter(procs.running())  # daphne, the worker with its engine, Redis
    rows = asyncio.run(openai_rows("api", f"http://{address}/api", key, MODEL, args, meter))

    cookie = common.session_cookie(user)
    # A new conversation per request (the same one-message prompt as the others), already
    # titled: a first exchange would also queue a title job on the engine after the answer.
    fresh = iter(
        Conversation.objects.bulk_create(
            Conversation(owner=user, model=model, title=f"bench {i}", title_auto=False)
            for i in range(1 + sum(max(level, args.requests) for level in args.level_list))
        )
    )

    async def one() -> dict:
        async with common.chat_socket(address, cookie, next(fresh).pk, max_size=2**24) as ws:
            await ws.recv()  # "ready"
            timer = Timer()
            params = {"max_tokens": args.tokens, "temperature": 0.7, "ignore_eos": True}
            await ws.send(json.dumps({"type": "send", "content": PROMPT, "params": params}))
            while True:
                event = json.loads(await ws.recv())
                if event["type"] == "delta" and event.get("content"):
                    timer.chunk()
                elif event["type"] == "done":
                    return timer.result(event["usage"]["completion_tokens"])
                elif event["type"] == "error":
                    raise SystemExit(f"the chat refused: {event}")

    rows += asyncio.run(measure("ws", args, one, meter))
    return rows


# --- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument(
        "--requests", type=int, default=8, help="at least this many per level (more: steadier first-token times)"
    )
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--raw-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.level_list = [int(x) for x in args.levels.split(",")]
    db = common.setup_django("serving")
    from inference_worker.engine import cpu_engine_env

    cpu_engine_env()  # before vLLM is imported; the engines started below inherit it
    if args.raw_child:
        return raw_child(args)

    common.fresh_database(db)
    from inference_worker.models import ChatModel

    ChatModel.objects.create(name=MODEL, **model_fields(args))
    systems = args.systems.split(",")
    procs = common.Processes()
    rows: list[dict] = []
    try:
        procs.redis()
        if "raw" in systems:
            out = common.ROOT / "var" / "bench-serving-raw.json"
            argv = [sys.executable, __file__, "--raw-child", "--raw-out", str(out), "--levels", args.levels]
            argv += ["--requests", str(args.requests)]
            child = procs.start("raw", [*argv, "--tokens", str(args.tokens), "--dtype", args.dtype])
            if child.wait() != 0:
                raise SystemExit(f"the raw engine run failed; see {procs.logs / 'raw.log'}")
            rows += json.loads(out.read_text())
        if "vllm" in systems:
            rows += vllm_rows(args, procs)
        if {"api", "ws"} & set(systems):
            rows += [r for r in chatweb_rows(args, procs) if r["system"] in systems]
    finally:
        procs.stop()
    report(args, rows)


def report(args, rows: list[dict]) -> None:
    by = {(r["system"], r["concurrency"]): r for r in rows}
    for r in rows:
        raw, peer = by.get(("raw", r["concurrency"])), by.get(("vllm", r["concurrency"]))
        r["x_raw"] = round(r["tokens_per_s"] / raw["tokens_per_s"], 2) if raw else None
        r["x_vllm"] = round(r["tokens_per_s"] / peer["tokens_per_s"], 2) if peer else None
        r["ttft_p50_minus_raw_ms"] = round(r["ttft_p50_ms"] - raw["ttft_p50_ms"], 1) if raw else None
    title = f"SmolLM2-135M {args.dtype}, {args.tokens} tokens per request, {common.machine()}"
    columns = ["system", "concurrency", "tokens_per_s", "x_raw", "x_vllm", "ttft_p50_ms", "ttft_p95_ms"]
    columns += ["ttft_p50_minus_raw_ms", "gap_p95_ms", "chunks_per_request"]
    columns += ["engine_cpu_s_per_1k", "serving_cpu_s_per_1k", "client_cpu_s_per_1k"]
    common.print_table(title, columns, rows)
    name = f"serving-{args.dtype}"
    common.write_csv(name, rows)
    series = {}
    for r in rows:
        xs, ys = series.setdefault(r["system"], ([], []))
        xs.append(r["concurrency"])
        ys.append(r["tokens_per_s"])
    plot_title = f"Output tokens/s, SmolLM2-135M {args.dtype}, {args.tokens} tokens per request"
    common.plot(name, plot_title, series, "concurrent requests", "tokens/s", logx=True)


if __name__ == "__main__":
    main()
