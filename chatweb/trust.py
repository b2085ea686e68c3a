"""Whom the ASGI application believes: which proxies may name the client, which pages may open a socket."""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


def behind_trusted_proxies(app):
    """X-Forwarded-For and X-Forwarded-Proto from the peers in TRUSTED_PROXIES only.

    daphne's own --proxy-headers believes them from anyone, so it is not used."""
    return ProxyHeadersMiddleware(app, trusted_hosts=settings.TRUSTED_PROXIES)


def _allowed_hosts() -> list[str]:
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]  # as Django's HttpRequest.get_host
    return settings.ALLOWED_HOSTS


def _is_secure(scope: dict, headers: dict[bytes, bytes]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    # HTTPS=true: the same header Django believes for the pages (SECURE_PROXY_SSL_HEADER).
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, value = proxy_header
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
        return headers.get(header, b"").decode("latin1").split(",")[0].strip() == value
    return False


def origin_allowed(scope: dict) -> bool:
    """The socket's Origin is this site (scheme, host and port) or one of CSRF_TRUSTED_ORIGINS.

    The comparison Django's CSRF check makes for the pages' POSTs; channels'
    AllowedHostsOriginValidator compares the host name only, so any port or scheme
    on an allowed host (another service on 127.0.0.1, say) could open a socket."""
    headers = dict(scope.get("headers", ()))
    origin = headers.get(b"origin", b"").decode("latin1").strip().lower()
    host = headers.get(b"host", b"").decode("latin1").strip().lower()
    if not origin or origin == "null":
        return False
    domain, _ = split_domain_port(host)
    if domain and validate_host(domain, _allowed_hosts()):
        scheme = "https" if _is_secure(scope, headers) else "http"
        if origin == f"{scheme}://{host}":
            return True
    trusted = [o.lower() for o in settings.CSRF_TRUSTED_ORIGINS]
    if origin in trusted:
        return True
    parsed = urlsplit(origin)
    wildcards = [urlsplit(pattern) for pattern in trusted if "*" in pattern]  # https://*.example.org
    return any(
        parsed.scheme == pattern.scheme and is_same_domain(parsed.netloc, pattern.netloc.lstrip("*"))
        for pattern in wildcards
    )


class SameOriginValidator:
    """Refuses (403 at the handshake) a websocket opened from a page of another origin."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)
