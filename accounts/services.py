"""Writes to accounts that carry rules (HackSoft style: keyword-only, <thing>_<action>)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import API_KEY_PREFIX, ApiKey, Role, UsageDay, User


class LastAdminError(Exception):
    pass


def _check_not_last_admin(user: User) -> None:
    others = User.objects.filter(role=Role.ADMIN, is_active=True).exclude(pk=user.pk)
    if user.role == Role.ADMIN and user.is_active and not others.exists():
        raise LastAdminError(f"{user.email} is the last active admin; promote someone else first.")


@transaction.atomic
def user_set_role(*, user: User, role: str) -> bool:
    """Change a role; refuses to leave the site without an active admin. True if changed."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.role == role:
        return False
    if role != Role.ADMIN:
        _check_not_last_admin(user)
    user.role = role
    user.save(update_fields=["role", "is_staff", "is_superuser"])
    return True


@transaction.atomic
def user_set_active(*, user: User, active: bool) -> bool:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active == active:
        return False
    if not active:
        _check_not_last_admin(user)
    user.is_active = active
    user.save(update_fields=["is_active"])
    return True


@transaction.atomic
def user_approve(*, user: User) -> bool:
    """A pending (or rejected) signup becomes an active user."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.role != Role.PENDING:
        return False
    user.role = Role.USER
    user.is_active = True
    user.save(update_fields=["role", "is_active", "is_staff", "is_superuser"])
    return True


@transaction.atomic
def user_reject(*, user: User) -> bool:
    """A pending signup is deactivated: it can no longer log in, and the admin can delete it later."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.role != Role.PENDING or not user.is_active:
        return False
    user.is_active = False
    user.save(update_fields=["is_active"])
    return True


def usage_record(
    *, user_id: int, prompt_tokens: int, completion_tokens: int, requests: int = 1, tool_calls: int = 0
) -> None:
    """Add one call's tokens (and built-in tool calls) to the user's usage for today (an
    upsert, safe under concurrency)."""
    day = timezone.localdate()
    with transaction.atomic():
        row, _ = UsageDay.objects.get_or_create(user_id=user_id, day=day)
        UsageDay.objects.filter(pk=row.pk).update(
            requests=F("requests") + requests,
            prompt_tokens=F("prompt_tokens") + prompt_tokens,
            completion_tokens=F("completion_tokens") + completion_tokens,
            tool_calls=F("tool_calls") + tool_calls,
        )


# --- API keys -----------------------------------------------------------------------


def _api_key_secrets() -> list[str]:
    """The secret new keys are made with, then every older one that may have made a stored key.

    Keys made before API_KEY_SECRET existed were made with SECRET_KEY (of that time)."""
    current = settings.API_KEY_SECRET or settings.SECRET_KEY
    older = [*settings.API_KEY_SECRET_FALLBACKS, settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return [current, *(secret for secret in dict.fromkeys(older) if secret and secret != current)]


def _api_key_digest(key: str, secret: str | None = None) -> str:
    secret = secret or _api_key_secrets()[0]
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


API_KEY_PREFIX_CHARS = 14  # "sk-cw-" and 8 random characters: indexed, shown in lists


def api_key_create(
    *, user: User, name: str, expires: datetime.datetime | None = None, save_history: bool = False
) -> tuple[ApiKey, str]:
    """A new key for `user`. Returns (row, key): the key is shown once and never stored."""
    name = (name or "").strip()
    if not name:
        raise ValueError("Give the key a name.")
    if len(name) > 100:
        raise ValueError("Keep the name under 100 characters.")
    if expires is not None and expires <= timezone.now():
        raise ValueError("The expiry must be in the future.")
    while True:
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = key[:API_KEY_PREFIX_CHARS]
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    row = ApiKey.objects.create(
        user=user, name=name, prefix=prefix, digest=_api_key_digest(key), expires=expires, save_history=save_history
    )
    return row, key


def api_key_find(key: str) -> ApiKey | None:
    """The row a presented key belongs to (live or not), or None; the digest is compared in constant time."""
    if not isinstance(key, str) or not key.startswith(API_KEY_PREFIX) or len(key) > 200:
        return None
    row = ApiKey.objects.select_related("user").filter(prefix=key[:API_KEY_PREFIX_CHARS]).first()
    if row is None:
        return None
    current, *older = _api_key_secrets()
    if hmac.compare_digest(row.digest, _api_key_digest(key, current)):
        return row
    for secret in older:
        if hmac.compare_digest(row.digest, _api_key_digest(key, secret)):
            # Re-hashed with the current secret, so the key outlives the old one's removal.
            row.digest = _api_key_digest(key, current)
            ApiKey.objects.filter(pk=row.pk).update(digest=row.digest)
            return row
    return None


def api_key_revoke(*, key: ApiKey) -> bool:
    return bool(ApiKey.objects.filter(pk=key.pk, revoked__isnull=True).update(revoked=timezone.now()))


def api_key_record(*, key_id: int, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> None:
    ApiKey.objects.filter(pk=key_id).update(
        requests=F("requests") + requests,
        prompt_tokens=F("prompt_tokens") + prompt_tokens,
        completion_tokens=F("completion_tokens") + completion_tokens,
        last_used=timezone.now(),
    )
