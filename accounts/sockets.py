"""Whether a chat socket's user may still act, and closing a user's sockets when not.

A socket is authorised once, at its handshake; the session behind it can be flushed
(logout) and the user deactivated or demoted afterwards. Two things keep an open socket
honest: every frame that acts re-reads the session and the user (`socket_user_check`,
inside the database hop the frame already takes), and a change of access tells the
user's open sockets to close (`close_user_sockets`, sent to the group every socket of
the user joins at connect).
"""

from __future__ import annotations

import hashlib
import logging
from importlib import import_module

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.db import transaction
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext

from accounts.models import User

logger = logging.getLogger(__name__)

# The refusal codes, as the socket's `error` event and the close event carry them.
UNAUTHENTICATED = "unauthenticated"
NOT_APPROVED = "not_approved"


class SocketRefused(Exception):
    def __init__(self, code: str) -> None:
        message = {
            UNAUTHENTICATED: gettext("You are signed out; sign in again."),
            NOT_APPROVED: gettext("Your account is not approved to chat."),
        }[code]
        super().__init__(message)
        self.message, self.code = message, code


def user_group(user_id: int) -> str:
    """The channel group every chat socket of a user joins."""
    return f"user.{user_id}"


def session_tag(session_key: str | None) -> str:
    """A session named on the channel layer without its key (the key signs the user in)."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:32]


def session_user(session_key: str | None) -> User | None:
    """The user a session signs in now, or None: what Django's get_user decides, read-only.

    Read-only because a socket cannot hand the browser a new cookie: get_user would cycle
    a session signed with a fallback secret, and the page's own cookie would stop working.
    """
    if not session_key:
        return None
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()  # {}: flushed or expired
    backend_path = data.get(BACKEND_SESSION_KEY)
    if SESSION_KEY not in data or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(User._meta.pk.to_python(data[SESSION_KEY]))  # None if inactive
    if user is None:
        return None
    session_hash = data.get(HASH_SESSION_KEY) or ""
    if constant_time_compare(session_hash, user.get_session_auth_hash()) or any(
        constant_time_compare(session_hash, fallback) for fallback in user.get_session_auth_fallback_hash()
    ):
        return user
    return None  # the password changed since this session signed in


def socket_user_check(scope: dict) -> User:
    """The socket's user as stored now, if it may still chat; else SocketRefused."""
    session = scope.get("session")
    user = session_user(session.session_key if session is not None else None)
    if user is None or user.pk != getattr(scope.get("user"), "pk", None):
        raise SocketRefused(UNAUTHENTICATED)
    if not user.is_approved:
        raise SocketRefused(NOT_APPROVED)
    return user


def close_user_sockets(*, user_id: int, code: str, session_key: str | None = None) -> None:
    """Close the user's open chat sockets (only those of one session, if given) once the
    change that calls for it is committed."""
    message = {"type": "user.revoked", "code": code}
    if session_key is not None:
        message["session"] = session_tag(session_key)
    transaction.on_commit(lambda: _send(user_group(user_id), message))


def _send(group: str, message: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, message)
    except (OSError, redis.RedisError):
        # The change stands; the sockets' next frame is refused by socket_user_check.
        logger.warning("could not tell %s's sockets to close: Redis is unreachable", group)
