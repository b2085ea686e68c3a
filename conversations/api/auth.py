"""Who calls the API: a bearer key, or for reads the browser's session (ApiHandler runs no
authentication middleware). Synchronous: it runs inside each view's first thread hop."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest

from accounts.models import ApiKey, SiteSettings, User, touch_last_active
from accounts.services import api_key_find
from conversations.api.errors import ApiError


@dataclass(frozen=True, slots=True)
class ApiCaller:
    user: User
    key: ApiKey | None = None


def _session_user(request: HttpRequest):
    """The browser's signed-in user, read from its session cookie the way Django's session and
    authentication middleware would (ApiHandler runs neither)."""
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    return get_user(request)


def authenticate(request: HttpRequest, site: SiteSettings | None = None) -> ApiCaller:
    """A bearer API key, or (for reads only) a signed-in session; else an ApiError. `site`: the
    settings row when the caller has read it already (a key needs it; a session does not)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "Send the key as 'Authorization: Bearer sk-cw-...'.", code="invalid_api_key")
        row = api_key_find(key.strip())
        if row is None:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        if row.revoked is not None:
            raise ApiError(401, "This API key was revoked.", code="invalid_api_key")
        if not row.is_live:
            raise ApiError(401, "This API key has expired.", code="expired_api_key")
        if not (site or SiteSettings.load()).api_keys_enabled:
            raise ApiError(403, "API keys are turned off on this site; ask an admin.", code="api_keys_disabled")
        caller = ApiCaller(row.user, row)
    else:
        # A signed-in browser may read (GET /api/models); anything that spends the GPU needs
        # a key: the views are csrf_exempt, so a session must not be enough for a POST.
        user = _session_user(request) if request.method == "GET" else None
        if user is None or not user.is_authenticated:
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-cw-...'.",
                code="missing_api_key",
            )
        caller = ApiCaller(user)
    user = caller.user
    if not user.is_active:
        raise ApiError(403, "This account is deactivated.", code="account_disabled")
    if not user.is_approved:
        raise ApiError(403, "Your account is awaiting approval by an administrator.", code="account_pending")
    touch_last_active(user)
    return caller
