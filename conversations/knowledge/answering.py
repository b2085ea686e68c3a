"""A turn's search of the user's documents, in the worker before the engine has the turn:
the passages go into the prompt (gpt-oss: the developer message) as numbered sources, the
search shows as the answer's first step ("Searched 3 files: 5 passages", with its time),
and the sources are stored with the message."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings

from accounts.models import SiteSettings
from conversations.jobs import TurnJob
from conversations.knowledge.search import prompt_text, retrieve, searchable_documents
from conversations.models import Conversation

log = logging.getLogger(__name__)
KNOWLEDGE_TOOL = "knowledge"  # the step's tool: not a tool call the model made, nor counted as one


def budget(context_length: int, max_tokens: int) -> int:
    """Tokens the passages may take: at most half of what the answer leaves of the context."""
    return max(0, min(settings.KNOWLEDGE_CONTEXT_TOKENS, (context_length - max_tokens) // 2))


def with_sources(job: TurnJob, *, context_length: int, default_max_tokens: int) -> tuple[TurnJob, list[dict]]:
    """The job with the passages its question found, and those sources; the job unchanged
    where the conversation searches no documents. A failed search never fails the answer:
    its step says so and the model answers without passages."""
    if job.conversation_id is None or job.message_id is None:
        return job, []
    conversation = Conversation.objects.select_related("preset").filter(pk=job.conversation_id).first()
    if conversation is None:
        return job, []
    document_ids = searchable_documents(conversation)
    # Most turns search nothing: the site's switch is read only for those that would.
    if not document_ids or not SiteSettings.load().knowledge_enabled:
        return job, []
    generation = job.generation
    question = next((m.content for m in reversed(generation.messages) if m.role == "user"), "")
    room = budget(context_length, generation.params.max_tokens or default_max_tokens)
    step: dict[str, Any] = {
        "id": f"step_{uuid.uuid4().hex[:16]}",
        "tool": KNOWLEDGE_TOOL,
        "kind": "knowledge",
        "status": "done",
    }
    try:
        found = retrieve(question, document_ids, budget_tokens=room)
    except Exception as exc:  # noqa: BLE001 - the answer goes on without passages
        log.exception("searching documents for %s failed", job.request_id)
        step.update(status="failed", error=f"The search failed ({exc.__class__.__name__}).", files=len(document_ids))
        return job.model_copy(update={"generation": generation.model_copy(update={"steps": [step]})}), []
    sources = [s.as_dict() for s in found.sources]
    step.update(
        files=found.files,
        passages=len(sources),
        seconds=round(found.seconds, 4),
        sources=sources,
    )
    update: dict[str, Any] = {"steps": [step]}
    if sources:
        system = generation.system_prompt.strip()
        update["system_prompt"] = f"{system}\n\n{prompt_text(found.sources)}" if system else prompt_text(found.sources)
    return job.model_copy(update={"generation": generation.model_copy(update=update)}), sources


def warm_up() -> None:
    """Load the embedding model and embed one question (where the site has documents on)."""
    from django.db import close_old_connections

    from conversations.knowledge.embedding import embedder

    try:
        if SiteSettings.load().knowledge_enabled:
            embedder().query("warm up")
    except Exception:  # noqa: BLE001 - the first search loads it then, and says so if it fails
        log.warning("loading the embedding model failed", exc_info=True)
    finally:
        close_old_connections()
