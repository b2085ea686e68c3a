"""Shared fixtures: a real Redis server, a real daphne, the OS chromium, and users.

Users, as in healthchecks' tests: `admin` (the first account), `alice` (owner of
whatever a test makes), `bob` (another approved user), `charlie` (pending).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import redis as redis_lib
from django.conf import settings

ROOT = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct-horse-battery-staple-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """The tests' own redis-server on the port of settings.REDIS_URL (6399)."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        self.port = urlparse(url).port or 6379
        self.client = redis_lib.Redis.from_url(url, socket_timeout=1)
        self.process: subprocess.Popen | None = None

    def up(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis_lib.ConnectionError:
            return False

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit("redis-server is not installed: run scripts/setup.sh (or apt-get install redis-server)", 2)
        if self.up():  # a leftover from an earlier run: replace it with our own
            try:
                self.client.shutdown(nosave=True)
            except redis_lib.ConnectionError:
                pass
            wait_for(lambda: not self.up(), 10, "the old redis-server to stop")
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.up, 10, "redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session", autouse=True)
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(settings.REDIS_URL, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_quotas(redis_server) -> None:
    """Each test starts with no requests counted (user ids repeat across flushed tests)."""
    for key in redis_server.client.scan_iter("chatweb:quota:*"):
        redis_server.client.delete(key)


@pytest.fixture
def users(db) -> SimpleNamespace:
    """The four accounts; tests run without the site's default limits unless they set their own."""
    from accounts.models import Role, SiteSettings, User

    site = SiteSettings.load()
    site.default_requests_per_minute = site.default_concurrent_generations = site.default_tokens_per_day = 0
    site.save()
    admin = User.objects.create_user("admin@example.com", PASSWORD)  # first account: becomes admin
    assert admin.role == Role.ADMIN
    return SimpleNamespace(
        admin=admin,
        alice=User.objects.create_user("alice@example.com", PASSWORD, role=Role.USER),
        bob=User.objects.create_user("bob@example.com", PASSWORD, role=Role.USER),
        charlie=User.objects.create_user("charlie@example.com", PASSWORD, role=Role.PENDING),
    )


@dataclass
class LiveServer:
    url: str
    ws_url: str
    process: subprocess.Popen
    log: Path


def test_database_url() -> str:
    """The test database (pytest-django has renamed it by now) as a DATABASE_URL."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    from urllib.parse import quote

    auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_environment(**extra: str) -> dict[str, str]:
    """Environment for a server or worker process that shares the test database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="false",
        STATIC_MANIFEST="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextmanager
def daphne_server(log: Path, **env: str) -> Iterator[LiveServer]:
    """A real daphne serving chatweb.asgi on a free port, on the test database; `env`
    adds to the test environment (settings a test needs the server to start with)."""
    port = free_port()
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatweb.asgi:application"],
            cwd=ROOT,
            env=test_environment(**env),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited:\n{log.read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(up, 30, "daphne")
        yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", proc, log)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def live_daphne(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveServer]:
    """A real daphne serving chatweb.asgi on a free port, on the test database."""
    with daphne_server(tmp_path_factory.mktemp("daphne") / "daphne.log") as server:
        yield server


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.exit("chromium is not installed: run scripts/setup.sh (or apt-get install chromium)", 2)
    # Playwright's sync API keeps an event loop in this thread, which Django's
    # async-safety check would take for async code; the ORM calls made by the
    # browser tests themselves are plain synchronous test code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


# Every page reports what its Content-Security-Policy refused (before any of its own scripts run).
CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (e) => console.error(
    `CSP violation: ${e.violatedDirective} refused ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));"""


def watch_csp(context, violations: list[str]) -> None:
    def seen(message) -> None:
        if message.text.startswith("CSP violation") or "Content Security Policy" in message.text:
            violations.append(f"{message.page.url if message.page else ''}: {message.text}")

    context.add_init_script(CSP_LISTENER)
    context.on("console", seen)


# A phone's screen (the size of a common one), touch and no hover, as a browser context's options.
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture
def new_page(browser):
    """Make pages with their own cookies (one per user in a test); a page is a desktop
    one unless given other context options (PHONE, color_scheme="dark", ...)."""
    contexts = []
    violations: list[str] = []  # any left at the end fail the test (one provoked on purpose: clear it)

    def make(**options):
        context = browser.new_context(**{**DESKTOP, **options})
        context.set_default_timeout(15_000)
        contexts.append(context)
        watch_csp(context, violations)
        return context.new_page()

    make.csp_violations = violations
    yield make
    for context in contexts:
        context.close()
    assert not violations, "the Content-Security-Policy refused something on a page:\n" + "\n".join(violations)


def assert_fits_the_screen(page) -> None:
    """Nothing on the page makes it scroll sideways. (On a phone the window grows to the
    widest content, so the page is measured against the screen's width, not the window's.)"""
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"


def assert_in_view(locator) -> None:
    """The element lies wholly inside the window, and a click would reach it (no scrolling)."""
    box = locator.bounding_box()
    size = locator.page.viewport_size
    assert box is not None, "not shown"
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= size["width"] and box["y"] + box["height"] <= size["height"], (box, size)
    locator.click(trial=True, timeout=5_000)


_LUMINANCE = """([selector, property]) => {
    let node = document.querySelector(selector);
    // a transparent background shows its parent's
    for (;;) {
        const value = getComputedStyle(node)[property];
        const [r, g, b, a = 1] = value.match(/[\\d.]+/g).map(Number);
        const seen = a > 0 || property !== "backgroundColor" || !node.parentElement;
        if (seen) return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
        node = node.parentElement;
    }
}"""


def is_dark(page, selector: str, what: str = "background") -> bool:
    """The element's background (or another colour property) is dark."""
    return page.evaluate(_LUMINANCE, [selector, "backgroundColor" if what == "background" else what]) < 0.3


def is_light(page, selector: str, what: str = "background") -> bool:
    """The element's background (or another colour property) is light."""
    return page.evaluate(_LUMINANCE, [selector, "backgroundColor" if what == "background" else what]) > 0.6


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    """allauth's rate limits live in the cache: each test starts with none spent."""
    from django.core.cache import cache

    cache.clear()
    yield


def pytest_configure(config):
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    test_db = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if test_db and not config.getoption("reuse_db", False):
        # A run killed while daphne held the test database (chatweb.sqlite) leaves its log
        # behind; Django recreates only the database file, and SQLite would replay the old
        # log into the new one.
        for suffix in ("-wal", "-shm"):
            Path(f"{test_db}{suffix}").unlink(missing_ok=True)


BROWSER_FIXTURES = {"browser", "new_page"}


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: Playwright's sync API keeps an event loop in the main
    thread for the rest of the session, which async tests cannot share."""
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


# --- real inference workers ---------------------------------------------------------

_TINY_GPT_OSS = {
    "folder": "tiny-gpt-oss",
    "prompt_format": "harmony",
    "dtype": "bfloat16",
    "context_length": 2048,
    "default_temperature": 0.0,
    "default_max_tokens": 64,
    "max_num_seqs": 8,
    "cpu_kv_cache_gib": 0.25,
    "enforce_eager": True,
}
TEST_MODELS = {
    # float32: greedy SmolLM2 answers the France question exactly (bf16 flips a token)
    "smollm2-test": {
        "folder": "smollm2-135m-instruct",
        "display_name": "SmolLM2 (tests)",
        "queue": "test-smollm2",
        "prompt_format": "chat_template",
        "dtype": "float32",
        "context_length": 2048,
        "default_temperature": 0.0,
        "default_max_tokens": 64,
        "max_num_seqs": 16,
        "cpu_kv_cache_gib": 0.5,
        "enforce_eager": True,
    },
    "gpt-oss-test": {**_TINY_GPT_OSS, "display_name": "Tiny gpt-oss (tests)", "queue": "test-gpt-oss"},
    # the same on its own queue, for a worker that unloads it when idle
    "gpt-oss-idle": {
        **_TINY_GPT_OSS,
        "display_name": "Tiny gpt-oss, unloaded when idle (tests)",
        "queue": "test-gpt-oss-idle",
    },
    # the same on its own queue, one request at a time: a real queue forms
    "gpt-oss-single": {
        **_TINY_GPT_OSS,
        "display_name": "Tiny gpt-oss, one at a time (tests)",
        "queue": "test-gpt-oss-single",
        "max_num_seqs": 1,
    },
}
# SmolLM2 on a queue no session worker serves: for tests that start, kill and restart a
# worker of their own, which must not take the shared workers' jobs nor share their names.
TEST_MODELS["smollm2-own"] = {
    **TEST_MODELS["smollm2-test"],
    "display_name": "SmolLM2 (tests, a worker of its own)",
    "queue": "test-smollm2-own",
}


def ensure_model_row(name: str):
    from inference_worker.local_models import is_built
    from inference_worker.models import ChatModel

    spec = dict(TEST_MODELS[name])
    folder = settings.MODELS_DIR / spec.pop("folder")
    if not is_built(folder):
        pytest.fail(f"{folder} is not built: run scripts/setup.sh (or make models)")
    row, _ = ChatModel.objects.update_or_create(name=name, defaults={**spec, "path": str(folder)})
    return row


@dataclass
class WorkerProcess:
    name: str
    model: str
    process: subprocess.Popen
    log: Path

    def heartbeat(self) -> dict | None:
        import json

        raw = redis_lib.Redis.from_url(settings.REDIS_URL).get(f"chatweb:worker:{self.name}")
        return json.loads(raw) if raw else None

    def wait_state(self, states: tuple[str, ...], timeout: float) -> dict:
        def check():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log.read_text()[-5000:]}")
            beat = self.heartbeat()
            return beat if beat and beat["state"] in states else None

        return wait_for(check, timeout, f"worker {self.name} to be {'/'.join(states)}", interval=0.2)

    def kill(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture(scope="session")
def start_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start `manage.py run_worker` processes on the test database; all stopped at the end."""
    import signal

    started: list[WorkerProcess] = []

    def start(
        model: str, *, tag: str = "cpu", idle_seconds: float = 600, wait: bool = True, env: dict | None = None
    ) -> WorkerProcess:
        with django_db_blocker.unblock():
            ensure_model_row(model)
        log = tmp_path_factory.mktemp("worker") / f"{model}-{tag}.log"
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "run_worker",
                    "--model",
                    model,
                    "--name",
                    tag,
                    "--idle-seconds",
                    str(idle_seconds),
                    "--loglevel",
                    "WARNING",
                ],
                cwd=ROOT,
                env=test_environment(CHATWEB_SCRIPTED_LOGITS="1", STREAM_INTERVAL_MS="30", **(env or {})),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill -9 takes the engine too
            )
        worker = WorkerProcess(f"{model}-{tag}@{socket.gethostname()}", model, proc, log)
        started.append(worker)
        if wait:
            worker.wait_state(("ready",), 300)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGTERM)
    for worker in started:
        try:
            worker.process.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.fixture(scope="session")
def smollm2_worker(start_worker) -> WorkerProcess:
    return start_worker("smollm2-test")


GPT_OSS_IDLE_SECONDS = 8
GPT_OSS_REASONING = "The user asks for the answer. It is 42."
GPT_OSS_ANSWER = "The answer is 42."


def script_env(tokens: list[int]) -> dict[str, str]:
    """A worker's environment that scripts every request naming no script of its own."""
    return {"CHATWEB_SCRIPT": ",".join(map(str, tokens))}


def gpt_oss_script() -> list[int]:
    """The harmony tokens the tiny random gpt-oss is made to say (see inference_worker/testing.py)."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    text = (
        f"<|channel|>analysis<|message|>{GPT_OSS_REASONING}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{GPT_OSS_ANSWER}<|return|>"
    )
    return encoding.encode(text, allowed_special="all")


@pytest.fixture(scope="session")
def gpt_oss_worker(start_worker) -> WorkerProcess:
    """The tiny gpt-oss, scripted to think GPT_OSS_REASONING and answer GPT_OSS_ANSWER."""
    return start_worker("gpt-oss-test", env=script_env(gpt_oss_script()))


@pytest.fixture(scope="session")
def idle_gpt_oss_worker(start_worker) -> WorkerProcess:
    """The same, on its own queue, unloading the model after GPT_OSS_IDLE_SECONDS idle (the
    lifecycle tests watch that). Apart from the shared one: there, each test after a pause
    paid a reload (about 35 s on a 2-core machine)."""
    return start_worker("gpt-oss-idle", idle_seconds=GPT_OSS_IDLE_SECONDS, env=script_env(gpt_oss_script()))


BREAD = " ".join(["bread"] * 120)


@pytest.fixture(scope="session")
def bread_worker(start_worker) -> WorkerProcess:
    """The tiny gpt-oss on a queue of its own that runs one answer at a time, scripted to
    say BREAD: long enough to stream in many deltas (use max_tokens 400)."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    script = encoding.encode(f"<|channel|>final<|message|>{BREAD}<|return|>", allowed_special="all")
    return start_worker("gpt-oss-single", env=script_env(script))


@pytest.fixture
def gpt_oss(db, gpt_oss_worker):
    return ensure_model_row("gpt-oss-test")


@pytest.fixture
def smollm2(db, smollm2_worker):
    """The test SmolLM2 row (tables are flushed between tests) and its live worker."""
    return ensure_model_row("smollm2-test")


def turn_job(*, user_id=None, message_id=None, conversation_id=None, api_key_id=None, make_title=False, **generation):
    """A chat turn's job as the admission builds it, for tests that enqueue one by hand."""
    from conversations.jobs import TurnJob

    return TurnJob(
        generation=generation,
        user_id=user_id,
        message_id=message_id,
        conversation_id=conversation_id,
        api_key_id=api_key_id,
        make_title=make_title,
    )


def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class ChatSocket:
    """A real websocket client on the live daphne, signed in as a user."""

    def __init__(self, server: LiveServer, user, conversation_id: int, *, cookie: str | None = None) -> None:
        """`cookie`: the session to sign in with (default: a new one of `user`'s)."""
        from websockets.sync.client import connect

        self._connection = connect(
            f"{server.ws_url}/ws/chat/{conversation_id}/",
            additional_headers={
                "Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie or session_cookie(user)}",
                "Origin": server.url,
            },
            open_timeout=10,
            max_size=2**24,
        )
        self.ws = self._connection.__enter__()

    def send(self, **message) -> None:
        import json

        self.ws.send(json.dumps(message))

    ready: dict | None = None  # the server's greeting on connect (which answer is active)

    def recv(self, timeout: float = 60) -> dict:
        """The next event, after the greeting (kept in self.ready)."""
        import json

        while True:
            event = json.loads(self.ws.recv(timeout=timeout))
            if event.get("type") != "ready":
                return event
            self.ready = event

    def until(self, *types: str, timeout: float = 120) -> list[dict]:
        """All events up to and including the first of `types`."""
        events = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.recv(timeout=max(0.1, deadline - time.monotonic()))
            events.append(event)
            if event["type"] in types:
                return events

    def close(self) -> None:
        self._connection.__exit__(None, None, None)
