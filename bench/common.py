"""What the benchmarks share: a scratch database, Redis, daphne, workers, results.

Each benchmark imports this first (it sets up Django on its own scratch SQLite file,
var/bench-<name>.sqlite3, rebuilt each run, and its own Redis on port 6397, so a
benchmark never touches the development data or a running test suite).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REDIS_PORT = 6397


def setup_django(name: str) -> Path:
    """Point Django at var/bench-<name>.sqlite3 and a benchmark Redis, then set it up."""
    sys.path.insert(0, str(ROOT))
    db = ROOT / "var" / f"bench-{name}.sqlite3"
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    os.environ.setdefault("SECRET_KEY_FILE", str(ROOT / "var" / "secret_key"))
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("STATIC_MANIFEST", "false")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    return db


def fresh_database(db: Path) -> None:
    from django.core.management import call_command

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    call_command("migrate", verbosity=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


class Processes:
    """Child processes started by a benchmark, each in its own group; all stopped at exit."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []
        self.logs = ROOT / "var" / "bench-logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def redis(self) -> subprocess.Popen:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed: run scripts/setup.sh")
        proc = self.start(
            "redis", [binary, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        )

        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", REDIS_PORT)) == 0

        wait_for(up, 10, "redis-server")
        return proc

    def daphne(self, name: str = "daphne", cwd: Path = ROOT) -> tuple[subprocess.Popen, str]:
        port = free_port()
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatweb.asgi:application"]
        proc = self.start(name, argv, cwd=cwd)

        def up() -> bool:
            if proc.poll() is not None:
                raise SystemExit(f"daphne exited; see {self.logs / name}.log")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(up, 30, "daphne")
        return proc, f"127.0.0.1:{port}"

    def worker(self, model: str, tag: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.Popen:
        argv = [sys.executable, "manage.py", "run_worker", "--model", model, "--name", tag, "--loglevel", "WARNING"]
        return self.start(f"worker-{tag}", argv, env, cwd)

    def running(self) -> list[int]:
        return [proc.pid for proc in self.started if proc.poll() is None]

    def stop_one(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def unlimited_user(email: str):
    """A user of the benchmark's scratch site, with the site's default limits off: the
    benchmarks measure serving, not quotas."""
    from accounts.models import Role, SiteSettings, User

    site = SiteSettings.load()
    site.default_requests_per_minute = site.default_concurrent_generations = site.default_tokens_per_day = 0
    site.default_tool_calls_per_day = 0
    site.save()
    return User.objects.create_user(email, "x" * 20, role=Role.USER)


def scripted_gpt_oss(procs: Processes, model: str, env: dict[str, str] | None = None) -> None:
    """The tests' tiny gpt-oss as the model row `model` (its own queue), and a worker for it
    scripted as the tests' (gpt_oss_script, weather_scripts), started and ready. `env` adds
    to the worker's environment."""
    import json

    from chatweb.testing.workers import TEST_MODELS, gpt_oss_script, script_env, weather_scripts
    from inference_worker import presence
    from inference_worker.models import ChatModel

    fields = {k: v for k, v in TEST_MODELS["gpt-oss-test"].items() if k != "folder"}
    fields.update(queue=model, display_name="Tiny gpt-oss (benchmark)")
    folder = TEST_MODELS["gpt-oss-test"]["folder"]
    ChatModel.objects.create(name=model, path=str(ROOT / "var" / "models" / folder), **fields)
    procs.worker(
        model,
        "tools",
        env={
            **script_env(gpt_oss_script()),
            "CHATWEB_SCRIPTED_LOGITS": "1",
            "CHATWEB_SCRIPTS": json.dumps(weather_scripts()),
            **(env or {}),
        },
    )
    wait_for(lambda: any(w["state"] == "ready" for w in presence.live_workers(model)), 600, "worker", 1)


def session_cookie(user) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def chat_socket(address: str, cookie: str, conversation_id: int, **kwargs):
    """A signed-in websocket on a conversation's chat (await it, or `async with` it)."""
    import websockets

    return websockets.connect(
        f"ws://{address}/ws/chat/{conversation_id}/",
        additional_headers={"Cookie": cookie, "Origin": f"http://{address}"},
        **kwargs,
    )


class CpuMeter:
    """CPU seconds used so far by the engine and by everything serving it.

    roots: the processes a system runs (their children are counted too). "engine" is
    vLLM's engine core and the process that runs the model (their titles say
    VLLM::EngineCore and VLLM::Worker); "serving" is the rest (a server or worker
    frontend, daphne, Redis). The benchmark's own process, the client, counts as
    "client" unless it is one of the roots.
    """

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots

    def read(self) -> dict[str, float]:
        import psutil

        totals = {"engine": 0.0, "serving": 0.0, "client": 0.0}
        me = os.getpid()
        procs: dict[int, tuple[psutil.Process, str]] = {} if me in self.roots else {me: (psutil.Process(), "client")}
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                family = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in family:
                try:
                    title = " ".join(proc.cmdline())
                    engine = "EngineCore" in title or "VLLM::Worker" in title
                except psutil.Error:
                    continue
                procs[proc.pid] = (proc, "engine" if engine else "serving")
        for proc, role in procs.values():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            totals[role] += times.user + times.system + times.children_user + times.children_system
        return totals


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def machine() -> str:
    import platform

    import psutil

    memory = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} vCPUs ({platform.processor() or platform.machine()}), {memory:.0f} GiB"


def print_table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths, strict=True)))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)


def write_csv(name: str, rows: list[dict[str, Any]]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot(name: str, title: str, series: dict[str, tuple[list, list]], xlabel: str, ylabel: str, **kw) -> Path:
    """One line per series, written to bench/results/<name>.png."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if kw.get("logx"):
        ax.set_xscale("log", base=2)
        ax.set_xticks(series[next(iter(series))][0], labels=[str(x) for x in series[next(iter(series))][0]])
    ax.grid(alpha=0.3)
    return _save(plt, fig, ax, name)


def bars(name: str, title: str, labels: list[str], series: dict[str, list[float]], xlabel: str) -> Path:
    """Horizontal bars, one group per label, written to bench/results/<name>.png."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(labels) * len(series) + 1.2), dpi=110)
    height = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.barh([y + i * height for y in range(len(labels))], values, height=height, label=label)
    ax.set_yticks([y + height * (len(series) - 1) / 2 for y in range(len(labels))], labels=labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, ax, name)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, ax, name: str) -> Path:
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
