"""Fixtures the API tests share."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from accounts.services import api_key_create
from conftest import session_cookie
from inference_worker.models import ChatModel


@pytest.fixture
def orphan(db) -> ChatModel:
    """A model no worker serves: a request that passes every check is refused with 503."""
    return ChatModel.objects.create(name="orphan", display_name="Orphan", path="/none", queue="orphan")


@pytest.fixture
def key(users) -> str:
    """An API key of alice's (the raw secret)."""
    return api_key_create(user=users.alice, name="tests")[1]


# --- the API as production serves it ----------------------------------------------------


class AsgiApi:
    """Calls to /api/ through `chatweb.asgi.application` in this process: the stack daphne serves
    (`conversations.api.ApiHandler`, without settings.MIDDLEWARE, which django.test.Client runs).

    Each call runs on an event loop of its own (async_to_sync); the views' synchronous work runs
    in this thread. Tests need `django_db(transaction=True)`: the handler's request signals close
    the database connection, which ends a test's enclosing transaction. The host is
    "testserver", which Django's test set-up adds to ALLOWED_HOSTS.
    """

    def __init__(self, client_addr: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        self.client_addr = client_addr

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        key: str | None = None,
        user=None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """`key`: sent as a bearer key; `user`: signed in with a fresh session cookie. Header
        values go out UTF-8 encoded, as a client's bytes would reach daphne."""
        headers = {name: value.encode() if isinstance(value, str) else value for name, value in (headers or {}).items()}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if user is not None:
            headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={session_cookie(user)}"
        return async_to_sync(self._call)(method, path, json, content, headers)

    async def _call(self, method, path, json_body, content, headers) -> httpx.Response:
        # Imported at the first call, once the test database is set up: chatweb.asgi opens a
        # connection at import (chatweb.sqlite.keep_wal).
        from chatweb.asgi import application

        transport = httpx.ASGITransport(app=application, client=self.client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.request(method, path, json=json_body, content=content, headers=headers)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def asgi_api() -> AsgiApi:
    return AsgiApi()
