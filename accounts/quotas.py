"""Per-user limits, counted in Redis, enforced on the chat and the API alike.

- requests per minute: a sorted set of the user's request ids of the last 60 s (a
  sliding window: a fixed one let through twice the limit across a minute's turn,
  and refused a user only until the next minute began);
- answers at once: a sorted set of the user's running request ids (an id whose
  worker vanished ages out after an hour, so a crash cannot lock a user out);
- tokens per day: a counter per user and day, added to when an answer ends.

A user's own limits (set by admins) override the site's defaults; 0 means none.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from django.utils import timezone

from accounts.models import SiteSettings, User
from inference_worker import presence

PREFIX = "chatweb:quota:"
STALE_SECONDS = 3600


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int
    concurrent_generations: int
    tokens_per_day: int


class QuotaExceeded(Exception):
    def __init__(self, message: str, code: str, retry_after: int) -> None:
        super().__init__(message)
        self.message, self.code, self.retry_after = message, code, max(1, retry_after)


def limits_for(user: User, site: SiteSettings | None = None) -> Limits:
    site = site or SiteSettings.load()
    pick = lambda own, default: default if own is None else own  # noqa: E731
    return Limits(
        pick(user.requests_per_minute, site.default_requests_per_minute),
        pick(user.concurrent_generations, site.default_concurrent_generations),
        pick(user.tokens_per_day, site.default_tokens_per_day),
    )


def _today() -> str:
    return timezone.localdate().isoformat()


def _seconds_to_midnight() -> int:
    now = timezone.localtime()
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - now).total_seconds()) + 1


def tokens_used_today(user_id: int) -> int:
    return int(presence.client().get(f"{PREFIX}tokens:{user_id}:{_today()}") or 0)


def _rpm_key(user_id: int) -> str:
    return f"{PREFIX}rpm:{user_id}"


def _running_key(user_id: int) -> str:
    return f"{PREFIX}running:{user_id}"


def _count_within(r, key: str, request_id: str, now: float, seconds: int) -> int:
    """Add the request to the sorted set `key` at `now`, forget those older than `seconds`,
    and say how many are left, the request included (one round trip)."""
    pipe = r.pipeline()
    pipe.zremrangebyscore(key, 0, now - seconds)
    pipe.zadd(key, {request_id: now})
    pipe.zcard(key)
    pipe.expire(key, seconds)
    return pipe.execute()[2]


def quota_acquire(*, user: User, request_id: str, site: SiteSettings | None = None) -> None:
    """Count one request against the user's limits, or raise QuotaExceeded (counting nothing).
    `site`: the settings row when the caller has read it already."""
    limits = limits_for(user, site)
    r = presence.client()
    now = time.time()
    if limits.tokens_per_day and tokens_used_today(user.pk) >= limits.tokens_per_day:
        raise QuotaExceeded(
            f"You have used your {limits.tokens_per_day:,} tokens for today. The limit resets at midnight.",
            "tokens_exhausted",
            _seconds_to_midnight(),
        )
    rpm_key = None
    if limits.requests_per_minute:
        rpm_key = _rpm_key(user.pk)
        count = _count_within(r, rpm_key, request_id, now, 60)
        if count > limits.requests_per_minute:
            r.zrem(rpm_key, request_id)
            # One more may go once `over` of the last minute's requests have aged out of it.
            over = count - limits.requests_per_minute  # ours, just removed, included
            aging = r.zrange(rpm_key, over - 1, over - 1, withscores=True)
            wait = int((aging[0][1] if aging else now) + 60 - now) + 1
            raise QuotaExceeded(
                f"You reached your limit of {limits.requests_per_minute} "
                f"request{'s' if limits.requests_per_minute != 1 else ''} per minute. "
                f"Try again in {wait} s.",
                "rate_limited",
                wait,
            )
    if limits.concurrent_generations:
        running_key = _running_key(user.pk)
        running = _count_within(r, running_key, request_id, now, STALE_SECONDS)
        if running > limits.concurrent_generations:
            r.zrem(running_key, request_id)
            if rpm_key:
                r.zrem(rpm_key, request_id)
            raise QuotaExceeded(
                f"You reached your limit of {limits.concurrent_generations} "
                f"answer{'s' if limits.concurrent_generations != 1 else ''} at once. "
                "Wait for one to finish, or stop one.",
                "too_many_concurrent",
                5,
            )


def quota_release(*, user_id: int, request_id: str) -> None:
    """The request ended (or never started): it no longer counts as running."""
    presence.client().zrem(_running_key(user_id), request_id)


def quota_refund(*, user_id: int, request_id: str) -> None:
    """The request was refused after it was counted: it neither runs nor counts this minute."""
    pipe = presence.client().pipeline()
    pipe.zrem(_running_key(user_id), request_id)
    pipe.zrem(_rpm_key(user_id), request_id)
    pipe.execute()


def quota_add_tokens(*, user_id: int, tokens: int) -> None:
    if tokens <= 0:
        return
    key = f"{PREFIX}tokens:{user_id}:{_today()}"
    pipe = presence.client().pipeline()
    pipe.incrby(key, tokens)
    pipe.expire(key, 2 * 86400)
    pipe.execute()
