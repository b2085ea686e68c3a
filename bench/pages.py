"""Server time of the pages a person opens all day, with a lot of history.

    .venv/bin/python bench/pages.py [--conversations 1000] [--messages 500] [--runs 40]

Builds a scratch SQLite database (var/bench-pages.sqlite3, rebuilt each run) with one
user holding N conversations of 4 messages each plus one conversation of M messages,
then times each request in process with Django's test client (server time only: no
network, no browser). Prints p50 / p95 in ms and the SQL queries per request, and
writes bench/results/pages.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = ROOT / "var" / "bench-pages.sqlite3"
os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
os.environ.setdefault("SECRET_KEY_FILE", str(ROOT / "var" / "secret_key"))
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("STATIC_MANIFEST", "false")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Role, User  # noqa: E402
from conversations.models import Conversation, Message  # noqa: E402
from inference_worker.models import ChatModel  # noqa: E402

WORDS = "bread dragon oven flour yeast knead crust bake chapter village fire smoke honey salt".split()


def text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(n)) + f" #{i}"


def build(conversations: int, long_messages: int) -> tuple[User, Conversation]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB}{suffix}").unlink(missing_ok=True)
    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench@example.com", "x" * 20, role=Role.USER)
    model = ChatModel.objects.create(name="bench", display_name="Bench", path="/none", queue="bench")
    now = timezone.now()
    convs = Conversation.objects.bulk_create(
        Conversation(owner=user, model=model, title=f"Conversation {i}: {text(i, 4)}") for i in range(conversations)
    )
    # spread the update times like a real history (bulk_create sets them all to now)
    for i, c in enumerate(convs):
        c.updated = now - timezone.timedelta(minutes=i)
    Conversation.objects.bulk_update(convs, ["updated"], batch_size=500)
    msgs = []
    for i, c in enumerate(convs):
        for k in range(4):
            msgs.append(
                Message(conversation=c, role="user" if k % 2 == 0 else "assistant", content=text(i * 4 + k, 60))
            )
    Message.objects.bulk_create(msgs, batch_size=1000)
    long = Conversation.objects.create(owner=user, model=model, title="The long one")
    parent = None
    for k in range(long_messages):
        body = text(k, 150) + ("\n\n```python\nprint('hello')\n```\n" if k % 5 == 1 else "")
        parent = Message.objects.create(
            conversation=long, parent=parent, role="user" if k % 2 == 0 else "assistant", content=body
        )
    return user, long


def measure(client: Client, url: str, runs: int) -> tuple[list[float], int, int]:
    client.get(url)  # warm caches, templates
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return times, len(queries), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    setup_test_environment()
    started = time.perf_counter()
    user, long = build(args.conversations, args.messages)
    print(
        f"built {args.conversations} conversations + one of {args.messages} messages "
        f"in {time.perf_counter() - started:.1f} s"
    )
    client = Client()
    client.force_login(user)
    first_page = client.get("/c/list").json()
    cursor = first_page["next"]
    for _ in range(args.conversations // 50 - 2):  # walk to the last pages
        cursor = client.get("/c/list", {"cursor": cursor}).json()["next"] or cursor
    rows = []
    cases = [
        ("chat page, no conversation open (sidebar page 1)", "/"),
        (f"chat page, conversation of {args.messages} messages", f"/c/{long.pk}/"),
        ("sidebar page 1 (JSON)", "/c/list"),
        (f"sidebar page {args.conversations // 50} (JSON, keyset cursor)", f"/c/list?cursor={cursor}"),
        ("search, a title word (JSON)", "/c/list?q=Conversation%2099"),
        ("search, message text, matches none", "/c/list?q=zebra"),
        (f"export JSON, {args.messages} messages", f"/c/{long.pk}/export.json"),
        (f"export Markdown, {args.messages} messages", f"/c/{long.pk}/export.md"),
    ]
    for label, url in cases:
        times, queries, size = measure(client, url, args.runs)
        q = statistics.quantiles(times, n=20)
        rows.append((label, statistics.median(times), q[18], queries, size))
    print()
    print(f"| request | p50 ms | p95 ms | SQL queries | response KiB |  ({args.runs} runs each)")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, p50, p95, queries, size in rows:
        print(f"| {label} | {p50:.1f} | {p95:.1f} | {queries} | {size / 1024:.0f} |")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "pages.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["request", "p50_ms", "p95_ms", "queries", "bytes"])
        writer.writerows(rows)
    plot(rows)


def plot(rows: list[tuple[str, float, float, int, int]]) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import common

    common.bars(
        "pages",
        "Server time per request: 1,000 conversations, one of 500 messages",
        [label for label, *_ in rows],
        {"p50 ms": [p50 for _, p50, *_ in rows], "p95 ms": [p95 for _, _, p95, *_ in rows]},
        "ms",
    )


if __name__ == "__main__":
    main()
