"""Per-user limits counted in the real Redis: requests per minute, answers at once, tokens per day."""

from __future__ import annotations

import time

import pytest

from accounts.models import SiteSettings
from accounts.quotas import (
    Limits,
    QuotaExceeded,
    limits_for,
    quota_acquire,
    quota_add_tokens,
    quota_refund,
    quota_release,
)

pytestmark = pytest.mark.django_db


def limit(user, **fields) -> None:
    for name, value in fields.items():
        setattr(user, name, value)
    user.save()


def test_requests_per_minute(users):
    limit(users.alice, requests_per_minute=2, concurrent_generations=0)
    quota_acquire(user=users.alice, request_id="a")
    quota_acquire(user=users.alice, request_id="b")
    with pytest.raises(QuotaExceeded) as refused:
        quota_acquire(user=users.alice, request_id="c")
    assert refused.value.code == "rate_limited" and 1 <= refused.value.retry_after <= 61
    assert "limit of 2 requests per minute" in refused.value.message
    quota_acquire(user=users.bob, request_id="d")  # another user's counter


def test_requests_per_minute_count_the_last_sixty_seconds(users):
    """A sliding window: the limit holds across a minute's turn, and the wait it names is
    until the oldest counted request is a minute old (a fixed window named the wait until
    the clock's next minute, anything from 1 to 60 s)."""
    limit(users.alice, requests_per_minute=2, concurrent_generations=0)
    t0 = time.time()
    quota_acquire(user=users.alice, request_id="a")
    t1 = time.time()
    time.sleep(1.5)
    quota_acquire(user=users.alice, request_id="b")
    before = time.time()
    with pytest.raises(QuotaExceeded) as refused:
        quota_acquire(user=users.alice, request_id="c")
    after = time.time()
    assert int(t0 + 60 - after) + 1 <= refused.value.retry_after <= int(t1 + 60 - before) + 1
    assert f"Try again in {refused.value.retry_after} s." in refused.value.message
    quota_refund(user_id=users.alice.pk, request_id="b")  # refused later on: it no longer counts
    quota_acquire(user=users.alice, request_id="c")


def test_answers_at_once_and_a_refusal_uses_up_nothing(users):
    limit(users.alice, requests_per_minute=3, concurrent_generations=1)
    quota_acquire(user=users.alice, request_id="a")
    with pytest.raises(QuotaExceeded) as refused:
        quota_acquire(user=users.alice, request_id="b")
    assert refused.value.code == "too_many_concurrent"
    quota_release(user_id=users.alice.pk, request_id="a")
    quota_acquire(user=users.alice, request_id="c")
    quota_release(user_id=users.alice.pk, request_id="c")
    quota_acquire(user=users.alice, request_id="d")  # b's refusal did not count against the minute
    quota_release(user_id=users.alice.pk, request_id="d")
    with pytest.raises(QuotaExceeded) as refused:
        quota_acquire(user=users.alice, request_id="e")
    assert refused.value.code == "rate_limited"


def test_tokens_per_day(users):
    limit(users.alice, tokens_per_day=100)
    quota_add_tokens(user_id=users.alice.pk, tokens=99)
    quota_acquire(user=users.alice, request_id="a")
    quota_add_tokens(user_id=users.alice.pk, tokens=1)
    with pytest.raises(QuotaExceeded) as refused:
        quota_acquire(user=users.alice, request_id="b")
    assert refused.value.code == "tokens_exhausted" and refused.value.retry_after <= 86401
    assert "100 tokens" in refused.value.message


def test_own_limits_override_the_sites_and_zero_means_none(users):
    site = SiteSettings.load()
    site.default_requests_per_minute, site.default_concurrent_generations, site.default_tokens_per_day = 5, 2, 1000
    site.save()
    assert limits_for(users.bob) == Limits(5, 2, 1000, tool_calls_per_day=500)
    limit(users.alice, requests_per_minute=0, concurrent_generations=0, tokens_per_day=0)
    for i in range(50):
        quota_acquire(user=users.alice, request_id=f"r{i}")
    quota_add_tokens(user_id=users.alice.pk, tokens=10**9)
    quota_acquire(user=users.alice, request_id="more")
