"""Delta coalescing: the first delta at once, then at most one per interval, nothing lost."""

from __future__ import annotations

import asyncio
import time

from inference_worker.engine import Coalescer


class Sink:
    """Where a coalescer publishes: records what it got and when."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict]] = []

    async def reply(self, request_id: str, event: dict) -> None:
        self.events.append((time.monotonic(), request_id, event))


async def arrived(sink: Sink, count: int, timeout: float = 10) -> None:
    """Wait for the coalescer's timer to publish (however late a busy machine runs it)."""
    deadline = time.monotonic() + timeout
    while len(sink.events) < count:
        assert time.monotonic() < deadline, sink.events
        await asyncio.sleep(0.01)


async def test_first_delta_goes_at_once_then_one_per_interval():
    sink = Sink()
    coalescer = Coalescer(sink, "req1", interval=0.5)
    await coalescer.push("Hel", "")
    assert len(sink.events) == 1, "the first delta is out before push returns"
    for piece in ["lo", ",", " wor", "ld"]:  # no waiting in between: all inside the interval
        await coalescer.push(piece, "")
        await asyncio.sleep(0)
    assert len(sink.events) == 1, "pieces inside the interval wait"
    await arrived(sink, 2)  # the timer flushes without another push
    _, request_id, second = sink.events[1]
    assert request_id == "req1"
    assert second == {"event": "delta", "seq": 1, "content": "lo, world"}
    assert sink.events[1][0] - sink.events[0][0] >= 0.49, "not before the interval is over"


async def test_reasoning_and_content_travel_in_one_delta_and_flush_empties_the_buffer():
    sink = Sink()
    coalescer = Coalescer(sink, "req2", interval=10)
    await coalescer.push("", "thinking")
    await coalescer.push("", " more")
    await coalescer.push("Answer", "")
    await coalescer.flush()
    await coalescer.flush()  # nothing left: no empty delta
    assert [e for _, _, e in sink.events] == [
        {"event": "delta", "seq": 0, "reasoning": "thinking"},
        {"event": "delta", "seq": 1, "content": "Answer", "reasoning": " more"},
    ]


async def test_many_fast_tokens_become_few_messages():
    sink = Sink()
    coalescer = Coalescer(sink, "req3", interval=0.03)
    for n in range(500):
        await coalescer.push(f"t{n} ", "")
        if n % 50 == 0:
            await asyncio.sleep(0.005)
    await coalescer.flush()
    text = "".join(e["content"] for _, _, e in sink.events)
    assert text == "".join(f"t{n} " for n in range(500))
    # The loop runs other tasks 10 times: each time at most a timer's flush and then, the
    # interval being over, the next push's; plus the first delta and the last flush.
    assert len(sink.events) <= 1 + 2 * 10 + 1
    assert [e["seq"] for _, _, e in sink.events] == list(range(len(sink.events)))


def test_many_answers_at_once_share_the_workers_publish_budget():
    """With many answers streaming, each one's deltas come less often and carry more,
    so the worker's messages a second stay within its budget."""
    from inference_worker.engine import EngineHost, EngineSpec

    spec = EngineSpec(
        name="m", path="/none", prompt_format="chat_template", context_length=2048, dtype="float32",
        max_num_seqs=256, tensor_parallel_size=1, gpu_memory_utilization=0.9, cpu_kv_cache_gib=1.0,
        enforce_eager=True, default_temperature=0.7, default_top_p=1.0, default_max_tokens=64,
        default_reasoning_effort="medium",
    )  # fmt: skip
    host = EngineHost(spec, worker_name="w", queue="q", stream_interval=0.03, publish_budget=500)
    for n in range(10):
        host.coalescers[f"r{n}"] = Coalescer(host, f"r{n}", host.publish_interval)
    assert host.publish_interval() == 0.03, "a few answers: the base interval"
    for n in range(10, 200):
        host.coalescers[f"r{n}"] = Coalescer(host, f"r{n}", host.publish_interval)
    assert host.publish_interval() == 200 / 500, "200 answers: 2.5 deltas a second each, 500 in all"
    host.publish_budget = 0
    assert host.publish_interval() == 0.03


async def test_an_interval_that_changes_is_read_at_each_delta():
    sink = Sink()
    interval = [0.01]
    coalescer = Coalescer(sink, "req4", interval=lambda: interval[0])
    await coalescer.push("a", "")
    await asyncio.sleep(0.02)
    await coalescer.push("b", "")
    assert len(sink.events) == 2, "past the short interval: sent at once"
    interval[0] = 1.0  # many answers started meanwhile
    await asyncio.sleep(0.02)  # past the old interval: only the new one makes it wait
    await coalescer.push("c", "")
    if time.monotonic() - sink.events[1][0] < 1.0:  # (a machine stalled for the whole second may send it)
        assert len(sink.events) == 2, "inside the longer interval: it waits"
    await arrived(sink, 3)
    assert [e["content"] for _, _, e in sink.events] == ["a", "b", "c"]
    assert sink.events[2][0] - sink.events[1][0] >= 0.99
