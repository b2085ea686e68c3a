from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from conversations.knowledge.vectors import VectorField


class Conversation(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    # True while the title is the machine's (from the first exchange); a rename makes it the user's.
    title_auto = models.BooleanField(default=True)
    preset = models.ForeignKey("Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model = models.ForeignKey("inference_worker.ChatModel", null=True, on_delete=models.SET_NULL, related_name="+")
    system_prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    # The built-in tools the user turned on ("browser", "python"); used where the site and model allow.
    builtin_tools = models.JSONField(default=list, blank=True)
    # Knowledge collections its answers search (besides the files attached to it); each is
    # checked again against the owner at every search.
    collections = models.ManyToManyField("Collection", blank=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated"]
        indexes = [models.Index(fields=["owner", "-updated"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Preset(models.Model):
    """An admin-published starting point (like an Ollama Modelfile): a model, a system prompt, parameters."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey("inference_worker.ChatModel", on_delete=models.CASCADE, related_name="presets")
    system_prompt = models.TextField(blank=True)
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text='For example {"temperature": 0.2, "max_tokens": 512, "reasoning_effort": "low"}.',
    )
    enabled = models.BooleanField(default=True)
    # Shared collections a conversation started from the preset searches.
    collections = models.ManyToManyField(
        "Collection",
        blank=True,
        related_name="+",
        limit_choices_to={"shared": True},
        help_text="Shared knowledge collections its conversations search.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from conversations.admission import SendError, clean_params

        try:
            self.params = clean_params(self.params).given()
        except SendError as exc:
            raise ValidationError({"params": exc.message}) from exc


class ConversationRead(models.Model):
    """Audit log: an admin read another user's conversation."""

    reader = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reader_email = models.EmailField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    owner_email = models.EmailField()
    conversation = models.ForeignKey(Conversation, null=True, on_delete=models.SET_NULL, related_name="+")
    conversation_title = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "conversation read by an admin"
        verbose_name_plural = "audit log: conversations read by admins"

    def __str__(self) -> str:
        return f"{self.reader_email} read a conversation of {self.owner_email}"


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    STREAMING = "streaming", "Streaming"
    DONE = "done", "Done"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # A regenerated or edited turn is a sibling branch under the same parent, never an overwrite.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.DONE)
    error = models.TextField(blank=True)
    # A failed answer's error code, as its live end gave it (worker_lost, context_length_exceeded,
    # ...): a reader that missed the end gets the same code from the store.
    error_code = models.CharField(max_length=40, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    # The generation behind an assistant message: its reply group on the channel
    # layer, and the worker that claimed it (checked against heartbeats).
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    worker = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    # The built-in tool calls of the answer, in order: tool, what it was asked, what it gave, seconds.
    tool_steps = models.JSONField(default=list, blank=True)
    # The passages the answer was given, numbered as it cites them: [{"n", "document_id",
    # "name", "page", "heading", "text"}]. A copy: the answer keeps its sources if a file goes.
    sources = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["status"], name="message_status_idx")]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"


class StoredResponse(models.Model):
    """A Responses API call kept for its owner (`store`, true by default as OpenAI's): what it
    was given, whole (a `previous_response_id` chain is resolved into `input_items` when the
    call is made, so each row stands alone), and what the model answered. Reasoning is kept
    in clear here, server-side; it leaves only to those Site settings let see it, or sealed."""

    id = models.CharField(primary_key=True, max_length=64)  # resp_...
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=20, default="in_progress")  # completed / incomplete / failed
    request = models.JSONField(default=dict)  # the settings echoed back (instructions, tools, metadata, ...)
    input_items = models.JSONField(default=list)  # the whole input, previous responses included
    output = models.JSONField(default=list)  # the output items, reasoning in clear
    usage = models.JSONField(default=dict)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return self.id


class Collection(models.Model):
    """A named set of files: a user's own, or an admin's shared with every user."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collections")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    # Only an admin's collection may be shared; every approved user may then search it (not change it).
    shared = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class DocumentStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    PARSING = "parsing", _("Parsing")
    CHUNKING = "chunking", _("Chunking")
    EMBEDDING = "embedding", _("Embedding")
    READY = "ready", _("Ready")
    FAILED = "failed", _("Failed")


class Document(models.Model):
    """An uploaded file: in a collection, or attached to one conversation. The bytes are
    stored under KNOWLEDGE_DIR by `key` (never by the name the user gave), outside the
    static folders, and only ever served back to its owner as an attachment."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents")
    collection = models.ForeignKey(
        Collection, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)  # sanitized: no path, no control characters
    kind = models.CharField(max_length=8)  # pdf, docx, pptx, xlsx, csv, html, md, txt
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=DocumentStatus.choices, default=DocumentStatus.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)  # of the stage's progress_total (chunks embedded)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    embedding_model = models.CharField(max_length=200, blank=True)  # what its chunks' vectors came from
    worker = models.CharField(max_length=200, blank=True)  # the knowledge worker indexing it
    attempts = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["owner", "-created"]), models.Index(fields=["status"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(collection__isnull=True) | models.Q(conversation__isnull=True),
                name="document_in_one_place",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Chunk(models.Model):
    """A passage of a document as retrieval finds it: its text, where it is (heading path,
    page), its words for full-text search and its vector."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    heading = models.CharField(max_length=500, blank=True)  # "Chapter > Section"
    page = models.PositiveIntegerField(null=True, blank=True)  # 1-based; None where the format has no pages
    tokens = models.PositiveIntegerField(default=0)  # gpt-oss tokens (o200k) of `text`
    # Lower-cased words, Chinese segmented by jieba, space-separated: what FTS5 (SQLite) or
    # a tsvector (PostgreSQL) indexes, since neither segments Chinese by itself.
    words = models.TextField(blank=True)
    embedding = VectorField(null=True)

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_place")]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"
