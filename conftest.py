"""Shared fixtures: a real Redis server, a real daphne, the OS chromium, and users; the
real inference workers come from chatweb/testing/workers.py (a plugin, below).

Users, as in healthchecks' tests: `admin` (the first account), `alice` (owner of
whatever a test makes), `bob` (another approved user), `charlie` (pending).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings

from chatweb.testing.sockets import ChatSocket, ask, page_text, session_cookie  # noqa: F401 - tests import these from here
from chatweb.testing.support import (  # noqa: F401 - tests import these from here
    ARTIFACTS,
    PASSWORD,
    ROOT,
    LiveServer,
    RedisServer,
    daphne_server,
    free_port,
    test_database_url,
    test_environment,
    wait_for,
)
from chatweb.testing.workers import (  # noqa: F401 - tests import these from here
    BREAD,
    GPT_OSS_ANSWER,
    GPT_OSS_IDLE_SECONDS,
    GPT_OSS_REASONING,
    TEST_MODELS,
    WorkerProcess,
    ensure_model_row,
    gpt_oss_script,
    script_env,
    turn_job,
)

pytest_plugins = ["chatweb.testing.workers", "chatweb.testing.web"]  # the worker fixtures, stand-in web servers


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
WORKER_FIXTURES = {"start_worker", "tool_worker"}  # every engine-holding fixture asks for start_worker


def pytest_collection_modifyitems(config, items):
    """A test is marked by the fixtures it uses (their whole closure), so `-m "not worker
    and not browser"` never starts an engine or chromium (conftest hooks run before
    pytest's own, which deselects by marker). Browser tests run last:
    Playwright's sync API keeps an event loop in the main thread for the rest of the
    session, which async tests cannot share."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if BROWSER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.browser)
        if WORKER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.worker)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
