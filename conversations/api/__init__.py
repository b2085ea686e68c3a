"""OpenAI-compatible JSON API (/api/ and /api/v1/)."""

from conversations.api.chat_completions import (
    SILENCE_BEFORE_CHECK,
    ApiHandler,
    bad_request,
    not_found,
    server_error,
    urlpatterns,
)

__all__ = ["SILENCE_BEFORE_CHECK", "ApiHandler", "bad_request", "not_found", "server_error", "urlpatterns"]
