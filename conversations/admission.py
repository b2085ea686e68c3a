"""The one admission of a chat turn, for every surface (the chat websocket, the API, ...).

A surface authenticates its caller, checks ownership and turns its own request into a
model, `Sampling` parameters and a history. `admit` then does the rest the same way for
all of them: the parameters' limits for this user and model, a live worker, the quota
(given back the same way on every failure), the rows the surface stores, and one
`TurnJob` enqueued on commit. Errors are `SendError`s: each surface renders them in its
own shape (a websocket error event, an OpenAI error with `status` and `param`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import kombu.exceptions
import pydantic
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from accounts.models import SiteSettings, User
from accounts.quotas import Limits, QuotaExceeded, limits_for, quota_acquire, quota_refund
from conversations.jobs import TurnJob, enqueue
from conversations.models import Message, MessageStatus
from inference_worker import presence
from inference_worker.jobs import Sampling, error_place
from inference_worker.models import ChatModel

QUEUE_ERRORS = (OSError, redis.RedisError, kombu.exceptions.OperationalError)
NEVER_QUEUED = gettext_lazy("The request never reached the queue. Retry.")


class SendError(Exception):
    """A turn (or a change to a conversation) refused, with what to tell the user.

    `status`, `param` and `retry_after` are for surfaces that speak HTTP."""

    def __init__(
        self, message: str, code: str, *, status: int = 400, param: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.param, self.retry_after = message, code, status, param, retry_after


def queue_down(exc: BaseException) -> SendError:
    return SendError(
        f"The queue is unreachable ({exc.__class__.__name__}); try again shortly.",
        "queue_down",
        status=503,
        retry_after=5,
    )


def clean_text(value: Any, *, what: str, limit: int | None = None) -> str:
    """Text every database stores and the tokenizers take: a string, no NUL, no lone surrogate
    (JSON can carry both; SQLite and PostgreSQL refuse them with a server error). `what`
    names it in the error, as a sentence begins ("This message")."""
    if not isinstance(value, str):
        raise SendError(gettext("%(what)s must be text.") % {"what": what}, "invalid_text")
    if "\x00" in value:
        raise SendError(gettext("%(what)s contains a NUL character.") % {"what": what}, "invalid_text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        message = gettext("%(what)s is not valid Unicode (it has a lone surrogate).") % {"what": what}
        raise SendError(message, "invalid_text") from None
    if limit is not None and len(value) > limit:
        message = gettext("%(what)s is %(size)s characters; the limit is %(limit)s.")
        raise SendError(message % {"what": what, "size": f"{len(value):,}", "limit": f"{limit:,}"}, "too_long")
    return value


RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def sampling_error(exc: pydantic.ValidationError) -> SendError:
    """The first problem of a parameter set, as a sentence naming the parameter (and its range)."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or None
    bounds = _bounds(where) if error["type"] in RANGE_ERRORS else None
    if bounds is not None:
        message = gettext("%(name)s must be between %(low)s and %(high)s.")
        return SendError(
            message % {"name": where, "low": _number(bounds[0]), "high": _number(bounds[1])},
            "invalid_params",
            param=where,
        )
    where, message = error_place(where, error["msg"].removeprefix("Value error, "))
    return SendError(f"{where}: {message}." if where else f"{message}.", "invalid_params", param=where)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _bounds(name: str | None) -> tuple[float, float] | None:
    """A Sampling field's range, from its own definition."""
    field = Sampling.model_fields.get(name or "")
    if field is None:
        return None
    low = next((getattr(m, a) for m in field.metadata for a in ("ge", "gt") if getattr(m, a, None) is not None), None)
    high = next((getattr(m, a) for m in field.metadata for a in ("le", "lt") if getattr(m, a, None) is not None), None)
    return None if low is None or high is None else (low, high)


def clean_params(raw: Any) -> Sampling:
    """Sampling parameters from a client (the page's panel, a websocket frame); unknown keys
    are ignored there, bad values refused."""
    if raw is None:
        return Sampling()
    if not isinstance(raw, dict):
        raise SendError("params must be an object.", "invalid_params")
    try:
        return Sampling.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise sampling_error(exc) from None


def require_live_worker(model: ChatModel) -> list[dict[str, Any]]:
    """The model's live workers' heartbeats; refused when there are none or its queue is full."""
    try:
        workers, waiting = presence.serving(model.name, model.queue)
        # Redis just restarted: the workers beat again within two beats (the first on a
        # dead connection may fail). Wait for them rather than refuse with no_worker.
        while not workers and presence.uptime() < 2 * presence.HEARTBEAT_SECONDS + 1:
            time.sleep(0.2)
            workers, waiting = presence.serving(model.name, model.queue)
    except (OSError, redis.RedisError) as exc:  # Redis down: say so instead of hanging
        raise queue_down(exc) from exc
    if not workers:
        raise SendError(
            f"No worker is serving {model.display_name} right now. Pick another model, or ask an admin to start one.",
            "no_worker",
            status=503,
            retry_after=10,
        )
    if waiting >= settings.MAX_QUEUE_LENGTH:
        raise SendError(
            f"{model.display_name} is very busy: {waiting} requests are waiting. Try again in a minute.",
            "queue_full",
            status=503,
            retry_after=10,
        )
    return workers


def check_token_ids(sampling: Sampling, model: ChatModel, workers: list[dict[str, Any]]) -> None:
    """Token ids (logit_bias, stop_token_ids) within the model's vocabulary, as its live workers
    report it (a worker still loading says nothing yet: its engine checks them again)."""
    sizes = [w["vocab_size"] for w in workers if isinstance(w.get("vocab_size"), int)]
    if not sizes:
        return
    vocab = min(sizes)
    if (outside := sampling.outside(vocab)) is not None:
        field, ids = outside
        raise SendError(
            f"{field}: token ids {ids[:5]} are outside {model.display_name}'s vocabulary of {vocab:,}.",
            "invalid_params",
            param=field,
        )


def check_min_tokens(sampling: Sampling, max_tokens: int, why: str) -> None:
    if sampling.min_tokens and sampling.min_tokens > max_tokens:
        raise SendError(
            f"min_tokens is {sampling.min_tokens:,}; the answer may write at most {max_tokens:,} ({why}).",
            "invalid_params",
            param="min_tokens",
        )


def answer_limit(sampling: Sampling, model: ChatModel, limits: Limits) -> int:
    """The answer's max_tokens: as asked, else the model's default, within the model's context
    and the user's tokens per answer. Asking for more than either is an error naming it."""
    context_cap = max(1, model.context_length - 1)  # the prompt takes at least one token
    caps = [(context_cap, f"{model.display_name} has a context of {model.context_length:,} tokens")]
    if limits.max_tokens_per_answer:
        caps.append((limits.max_tokens_per_answer, "your account may ask for that many tokens per answer"))
    if sampling.max_tokens is None:
        return min([model.default_max_tokens] + [cap for cap, _ in caps])
    for cap, why in caps:
        if sampling.max_tokens > cap:
            raise SendError(
                f"max_tokens is {sampling.max_tokens:,}; at most {cap:,} ({why}).",
                "max_tokens_too_large",
                param="max_tokens",
            )
    return sampling.max_tokens


@contextlib.contextmanager
def _quota(user: User, request_id: str, max_tokens: int, limits: Limits) -> Iterator[int]:
    """Count the request against the user's limits (reserving its tokens); on any failure
    inside, give all of it back."""
    try:
        granted = quota_acquire(user=user, request_id=request_id, max_tokens=max_tokens, limits=limits)
    except QuotaExceeded as exc:
        raise SendError(exc.message, exc.code, status=429, retry_after=exc.retry_after) from exc
    except (OSError, redis.RedisError) as exc:
        raise queue_down(exc) from exc
    try:
        yield granted
    except BaseException:
        with contextlib.suppress(OSError, redis.RedisError):
            quota_refund(user_id=user.pk, request_id=request_id)
        raise


def admit(
    *,
    user: User,
    model: ChatModel,
    sampling: Sampling,
    request_id: str,
    store: Callable[[Sampling], TurnJob],
    site: SiteSettings | None = None,
    choices: int = 1,
) -> TurnJob:
    """Admit one turn: limits, a live worker, the quota, the surface's rows and the job.

    `store(sampling)` runs inside the transaction with the answer's final parameters and
    returns the job (writing whatever rows the surface keeps, after the checks that need
    the transaction, such as a busy conversation). The job is enqueued when the
    transaction commits; if that fails, the quota is given back, the answer's row (if
    any) is failed and the caller gets a queue_down error. The surface must already
    follow the request's reply group (the first events go to whoever listens). `choices`
    answers sampled at once (the API's n) each reserve max_tokens of the day."""
    limits = limits_for(user, site)
    wanted = answer_limit(sampling, model, limits)
    check_min_tokens(sampling, wanted, "its max_tokens")
    check_token_ids(sampling, model, require_live_worker(model))
    with _quota(user, request_id, wanted * choices, limits) as reserved:
        granted = max(1, reserved // choices)  # each choice may write this much
        check_min_tokens(sampling, granted, "the tokens left of your day")
        with transaction.atomic():
            job = store(sampling.model_copy(update={"max_tokens": granted}))
            transaction.on_commit(lambda: _enqueue(job, model.queue))
    return job


def _enqueue(job: TurnJob, queue: str) -> None:
    try:
        enqueue(job, queue)
    except QUEUE_ERRORS as exc:
        if job.message_id is not None:
            Message.objects.filter(pk=job.message_id, status=MessageStatus.QUEUED).update(
                status=MessageStatus.FAILED, error=str(NEVER_QUEUED), error_code="queue_down", updated=timezone.now()
            )
        raise queue_down(exc) from exc
