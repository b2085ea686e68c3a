"""Which channel layer carries a worker's deltas: measured, not assumed.

    .venv/bin/python bench/channel_layers.py [--messages 5000] [--redis redis://127.0.0.1:6379/5]

One publisher sends N group messages as fast as it can (as a busy worker does)
to a group with one subscribed consumer channel, through each channels_redis
layer at its default settings. Prints delivered / sent, order and rate.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer


async def run(layer, n: int) -> dict:
    channel = await layer.new_channel()
    await layer.group_add("bench", channel)
    received: list[int] = []

    async def consume():
        while len(received) < n:
            message = await layer.receive(channel)
            received.append(message["seq"])

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    for seq in range(n):
        await layer.group_send("bench", {"type": "chat.event", "seq": seq, "content": "tok"})
    sent = time.perf_counter() - started
    try:
        await asyncio.wait_for(consumer, timeout=5)
    except TimeoutError:
        consumer.cancel()
    elapsed = time.perf_counter() - started
    await layer.group_discard("bench", channel)
    return {
        "delivered": len(received),
        "in_order": received == sorted(received),
        "send_rate": n / sent,
        "delivered_rate": len(received) / elapsed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    layers = {
        "core (RedisChannelLayer, defaults)": RedisChannelLayer(hosts=[args.redis]),
        "pubsub (RedisPubSubChannelLayer)": RedisPubSubChannelLayer(hosts=[args.redis]),
    }
    print(f"{'layer':40} {'sent':>6} {'delivered':>9} {'lost':>6} {'order':>6} {'send/s':>8} {'recv/s':>8}")
    for name, layer in layers.items():
        r = await run(layer, args.messages)
        print(
            f"{name:40} {args.messages:6d} {r['delivered']:9d} {args.messages - r['delivered']:6d} "
            f"{'ok' if r['in_order'] else 'NO':>6} {r['send_rate']:8.0f} {r['delivered_rate']:8.0f}"
        )
        if hasattr(layer, "flush"):
            await layer.flush()


if __name__ == "__main__":
    asyncio.run(main())
