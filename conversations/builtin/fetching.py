"""Fetch a web page for the model without letting it reach the deployment's own
network (server-side request forgery).

Each hop resolves its host once, refuses the hop if any address is not public,
and connects to the checked address itself (with the name kept for Host and TLS),
so a second DNS answer cannot swap in another address. Redirects are followed by
hand and checked again. No cookie jar, no credentials: a page gets nothing of
ours but a User-Agent. Size, time and content type are limited.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from django.conf import settings

USER_AGENT = "chatweb-browser/1.0 (+https://github.com/)"
REDIRECTS = 5
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown", "application/json")


class FetchError(Exception):
    """The page cannot be had; the message is said to the model and the user."""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, from the system's resolver (DNS leaves the machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"{host} cannot be resolved ({exc.strerror})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def _allowed_networks():
    return [ipaddress.ip_network(net, strict=False) for net in settings.BROWSER_ALLOWED_NETWORKS]


def refusal(address: str) -> str | None:
    """Why the browser may not connect to address, or None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo and ip.teredo[1])
        if embedded:
            ip = embedded
    if any(ip in net for net in _allowed_networks()):
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata lives)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return "a private or reserved address"
    return None


def _target(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https pages can be opened, not {parts.scheme or 'this'!r}")
    if parts.username or parts.password:
        raise FetchError("a URL with a user name or password is not opened")
    host = parts.hostname
    if not host:
        raise FetchError("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("the URL's port is not a number") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, host, port, path


def _pool(scheme: str, host: str, address: str, port: int, seconds: float):
    timeout = urllib3.Timeout(connect=min(seconds, 10), read=seconds)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address, port, timeout=timeout, retries=False, maxsize=1,
            server_hostname=host, assert_hostname=host,
            cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
        )  # fmt: skip
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)


def fetch(url: str, *, seconds: float, max_bytes: int | None = None) -> Fetched:
    max_bytes = max_bytes or settings.BROWSER_PAGE_BYTES
    deadline = time.monotonic() + seconds
    for _hop in range(REDIRECTS + 1):
        scheme, host, port, path = _target(url)
        addresses = resolve(host, port)
        for address in addresses:
            why = refusal(address)
            if why:
                raise FetchError(f"{host} is {why}: the browser does not open it")
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError("the page took too long")
        pool = _pool(scheme, host, addresses[0], port, left)
        default_port = 443 if scheme == "https" else 80
        headers = {
            "Host": host if port == default_port else f"{host}:{port}",
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1",
            "Accept-Encoding": "identity",
        }
        try:
            response = pool.urlopen(
                "GET", path, headers=headers, redirect=False, preload_content=False,
                assert_same_host=False,
            )  # fmt: skip
        except urllib3.exceptions.HTTPError as exc:
            pool.close()
            raise FetchError(f"{host} could not be reached ({type(exc).__name__})") from None
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise FetchError(f"{host} redirected nowhere")
                url = urljoin(url, location)
                continue
            if response.status >= 400:
                raise FetchError(f"{host} answered HTTP {response.status}")
            content_type = response.headers.get("Content-Type", "")
            media = content_type.split(";")[0].strip().lower()
            if media not in TEXT_TYPES:
                raise FetchError(f"the page is {media or 'of no stated type'}, not text or HTML")
            body = bytearray()
            truncated = False
            for chunk in response.stream(65536):
                if time.monotonic() > deadline:
                    raise FetchError("the page took too long")
                body += chunk
                if len(body) >= max_bytes:
                    del body[max_bytes:]
                    truncated = True
                    break
            charset = None
            for part in content_type.split(";")[1:]:
                name, _, value = part.strip().partition("=")
                if name.lower() == "charset":
                    charset = value.strip('"') or None
            return Fetched(url, media, charset, bytes(body), truncated)
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"{host} broke off ({type(exc).__name__})") from None
        finally:
            response.release_conn()
            pool.close()
    raise FetchError(f"more than {REDIRECTS} redirects")
