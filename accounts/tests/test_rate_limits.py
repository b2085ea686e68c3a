"""The per-IP login and signup rate limits count the peer, or the client a trusted proxy names."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

import conftest
from conftest import PASSWORD, ROOT, free_port, wait_for


def production_daphne_options() -> list[str]:
    """daphne's options in `make run` and in the web image (they must agree), bar -b and -p."""
    found = []
    for path in (ROOT / "scripts/serve.sh", ROOT / "Dockerfile"):
        line = re.search(r"daphne (.*?) chatweb\.asgi:application", Path(path).read_text())
        assert line, f"no daphne command in {path}"
        words = shlex.split(line.group(1))
        options = [w for i, w in enumerate(words) if w not in ("-b", "-p") and words[i - 1 : i] not in (["-b"], ["-p"])]
        found.append(options)
    assert found[0] == found[1], f"serve.sh and the Dockerfile start daphne differently: {found}"
    return found[0]


@pytest.fixture
def start_daphne(tmp_path):
    """A daphne started as production starts it, with its own cache (so its own rate limits)."""
    processes = []

    def start(**env: str) -> str:
        port = free_port()
        log = (tmp_path / f"daphne-{port}.log").open("w")
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *production_daphne_options()]
        proc = subprocess.Popen(
            [*command, "chatweb.asgi:application"],
            cwd=ROOT,
            env=conftest.test_environment(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / f"daphne-{port}.log").read_text()
            try:
                return httpx.get(f"{url}/accounts/login/", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 30, "daphne", interval=0.2)
        return url

    yield start
    for proc in processes:
        proc.terminate()
        proc.wait(10)


def log_in(http: httpx.Client, email: str, password: str, forwarded_for: str) -> httpx.Response:
    page = http.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return http.post(
        "/accounts/login/",
        data={"login": email, "password": password, "csrfmiddlewaretoken": token},
        headers={"X-Forwarded-For": forwarded_for, "Referer": f"{http.base_url}/accounts/login/"},
    )


def spray_then_log_in(url: str, users) -> httpx.Response:
    """Ten wrong passwords for ten addresses, each claiming another client IP; then the right one."""
    with httpx.Client(base_url=url, timeout=30) as http:
        for n in range(10):
            failed = log_in(http, f"victim{n}@example.com", "wrong-password-0000", f"203.0.113.{n + 1}")
            assert failed.status_code == 200
        return log_in(http, users.bob.email, PASSWORD, "203.0.113.200")


@pytest.mark.django_db(transaction=True)
def test_a_rotating_x_forwarded_for_does_not_evade_the_login_rate_limit(start_daphne, users):
    last = spray_then_log_in(start_daphne(), users)
    # this address spent its ten failures a minute: even the right password waits
    assert last.status_code == 200 and "Too many failed login attempts" in last.text
    assert "sessionid" not in last.cookies


def test_only_a_proxy_named_in_trusted_proxies_names_the_client():
    from chatweb.trust import behind_trusted_proxies

    seen = []

    async def app(scope, receive, send) -> None:
        seen.append((scope["client"][0], scope["scheme"]))

    async def request_from(peer: str) -> None:
        headers = [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.2"), (b"x-forwarded-proto", b"https")]
        scope = {"type": "http", "scheme": "http", "client": (peer, 5000), "headers": headers}
        await behind_trusted_proxies(app)(scope, None, None)

    with override_settings(TRUSTED_PROXIES=["10.0.0.0/8"]):
        async_to_sync(request_from)("10.0.0.1")  # the proxy, behind another of ours at 10.0.0.2
        async_to_sync(request_from)("198.51.100.7")  # anyone else: the headers are theirs to invent
    assert seen == [("203.0.113.9", "https"), ("198.51.100.7", "http")]
