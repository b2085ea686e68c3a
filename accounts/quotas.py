"""Per-user limits, counted in Redis, enforced on the chat and the API alike.

- requests per minute: a sorted set of the user's request ids of the last 60 s (a
  sliding window: a fixed one let through twice the limit across a minute's turn,
  and refused a user only until the next minute began);
- answers at once: a sorted set of the user's running request ids (an id whose
  worker vanished ages out after an hour, so a crash cannot lock a user out);
- tokens per day: a counter per user and day. Admission reserves the answer's
  max_tokens in it (no more than the day has left: the answer's max_tokens is cut
  to that), and the answer's end gives back the reservation and adds what it used,
  prompt included. Parallel requests therefore cannot spend more than the day has
  left; `chatweb:quota:reserved:<user>` remembers each request's reservation, so a
  refusal, a stop or a lost worker gives back exactly its own;
- tokens per answer: the most max_tokens a user may ask for (checked at admission);
- built-in tool calls per day: a counter per user and day, taken one call at a time by
  the tool loop (conversations.builtin.runner) before the call runs.

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
    max_tokens_per_answer: int = 0
    tool_calls_per_day: int = 0


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
        pick(user.max_tokens_per_answer, site.default_max_tokens_per_answer),
        pick(user.tool_calls_per_day, site.default_tool_calls_per_day),
    )


def _today() -> str:
    return timezone.localdate().isoformat()


def _seconds_to_midnight() -> int:
    now = timezone.localtime()
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - now).total_seconds()) + 1


def _tokens_key(user_id: int, day: str | None = None) -> str:
    return f"{PREFIX}tokens:{user_id}:{day or _today()}"


def _reserved_key(user_id: int) -> str:
    return f"{PREFIX}reserved:{user_id}"


def tokens_used_today(user_id: int) -> int:
    """Tokens spent today, and reserved by answers still being written."""
    return int(presence.client().get(_tokens_key(user_id)) or 0)


# KEYS: the day's counter, the user's reservations. ARGV: limit, wanted, request id,
# the day, ttl. Takes what the day has left, up to `wanted`; 0 when nothing is left.
RESERVE_SCRIPT = """
local left = tonumber(ARGV[1]) - tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then return 0 end
local take = math.min(left, tonumber(ARGV[2]))
redis.call('INCRBY', KEYS[1], take)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4] .. ' ' .. take)
redis.call('EXPIRE', KEYS[2], ARGV[5])
return take
"""
# KEYS: the user's reservations, the running set. ARGV: request id, the counters' prefix.
# Gives back the request's reservation to the day it was taken from, and its running slot.
RELEASE_SCRIPT = """
redis.call('ZREM', KEYS[2], ARGV[1])
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local day, take = string.match(held, '^(%S+) (%d+)$')
if day and redis.call('EXISTS', ARGV[2] .. day) == 1 then
  redis.call('DECRBY', ARGV[2] .. day, take)
end
return tonumber(take) or 0
"""
_scripts: dict[str, object] = {}


def _script(source: str):
    r = presence.client()
    if source not in _scripts:
        _scripts[source] = r.register_script(source)
    return _scripts[source]


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


def _tokens_exhausted(limits: Limits) -> QuotaExceeded:
    return QuotaExceeded(
        f"You have used your {limits.tokens_per_day:,} tokens for today. The limit resets at midnight.",
        "tokens_exhausted",
        _seconds_to_midnight(),
    )


def quota_acquire(
    *, user: User, request_id: str, max_tokens: int = 0, site: SiteSettings | None = None, limits: Limits | None = None
) -> int:
    """Count one request against the user's limits, or raise QuotaExceeded (counting nothing).

    With a daily token limit, `max_tokens` is reserved against what the day has left and
    the answer's own limit is returned: max_tokens, or less when the day has less left.
    Without one, max_tokens is returned as it is. `site`: the settings row when the
    caller has read it already."""
    limits = limits or limits_for(user, site)
    r = presence.client()
    now = time.time()
    if limits.tokens_per_day and tokens_used_today(user.pk) >= limits.tokens_per_day:
        raise _tokens_exhausted(limits)
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
    if not limits.tokens_per_day or max_tokens <= 0:  # nothing to reserve
        return max_tokens
    granted = _script(RESERVE_SCRIPT)(
        keys=[_tokens_key(user.pk), _reserved_key(user.pk)],
        args=[limits.tokens_per_day, max_tokens, request_id, _today(), 2 * 86400],
    )
    if not granted:  # others took the rest meanwhile
        quota_refund(user_id=user.pk, request_id=request_id)
        raise _tokens_exhausted(limits)
    return int(granted)


def quota_release(*, user_id: int, request_id: str) -> None:
    """The request ended (or never started): it no longer counts as running, and its
    reservation of tokens is given back (what it used is added by quota_add_tokens)."""
    _script(RELEASE_SCRIPT)(
        keys=[_reserved_key(user_id), _running_key(user_id)], args=[request_id, f"{PREFIX}tokens:{user_id}:"]
    )


def quota_refund(*, user_id: int, request_id: str) -> None:
    """The request was refused after it was counted: it neither runs, nor holds tokens, nor
    counts this minute."""
    quota_release(user_id=user_id, request_id=request_id)
    presence.client().zrem(_rpm_key(user_id), request_id)


def quota_add_tokens(*, user_id: int, tokens: int) -> None:
    if tokens <= 0:
        return
    key = _tokens_key(user_id)
    pipe = presence.client().pipeline()
    pipe.incrby(key, tokens)
    pipe.expire(key, 2 * 86400)
    pipe.execute()


def _tool_calls_key(user_id: int) -> str:
    return f"{PREFIX}tools:{user_id}:{_today()}"


# KEYS: the day's tool calls. ARGV: limit (0: none), ttl. The day's count with this call,
# or 0 when the day has none left (counting nothing).
TOOL_CALL_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > 0 and used >= tonumber(ARGV[1]) then return 0 end
local now = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return now
"""


def quota_take_tool_call(*, user_id: int, limit: int) -> int | None:
    """Count one built-in tool call against the user's day of `limit` calls (0: none, from
    limits_for). Returns the calls the day has left after it (None: no limit); raises
    QuotaExceeded, counting nothing, when it has none."""
    count = _script(TOOL_CALL_SCRIPT)(keys=[_tool_calls_key(user_id)], args=[limit, 2 * 86400])
    if not count:
        raise QuotaExceeded(
            f"You have used your {limit:,} built-in tool calls for today. The limit resets at midnight.",
            "tool_calls_exhausted",
            _seconds_to_midnight(),
        )
    return limit - count if limit else None
