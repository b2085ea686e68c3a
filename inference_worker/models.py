from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class PromptFormat(models.TextChoices):
    HARMONY = "harmony", "Harmony (gpt-oss)"
    CHAT_TEMPLATE = "chat_template", "Tokenizer chat template"


class ReasoningEffort(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


def validate_queue_name(value: str) -> None:
    if not re.fullmatch(r"[a-zA-Z0-9._-]{1,80}", value):
        raise ValidationError("Use letters, digits, dots, dashes and underscores only.")


class ChatModel(models.Model):
    """A model that workers serve and users pick: one row per served model, managed by admins."""

    name = models.CharField(
        max_length=100,
        unique=True,
        help_text="The id clients ask for (the `model` field of the API), e.g. gpt-oss-20b.",
    )
    display_name = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True, help_text="Shown beside the name in the UI.")
    path = models.CharField(
        "engine path or Hugging Face id", max_length=500, help_text="openai/gpt-oss-20b or a local folder."
    )
    queue = models.CharField(max_length=80, unique=True, validators=[validate_queue_name])
    prompt_format = models.CharField(max_length=20, choices=PromptFormat.choices, default=PromptFormat.CHAT_TEMPLATE)
    context_length = models.PositiveIntegerField(default=4096, validators=[MinValueValidator(256)])
    dtype = models.CharField(
        max_length=16,
        default="auto",
        choices=[(d, d) for d in ("auto", "bfloat16", "float16", "float32")],
    )
    default_temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0), MaxValueValidator(2)])
    default_top_p = models.FloatField(default=1.0, validators=[MinValueValidator(0.01), MaxValueValidator(1)])
    default_max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    default_reasoning_effort = models.CharField(
        max_length=8, choices=ReasoningEffort.choices, default=ReasoningEffort.MEDIUM
    )
    tensor_parallel_size = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    gpu_memory_utilization = models.FloatField(
        "GPU memory utilisation", default=0.9, validators=[MinValueValidator(0.05), MaxValueValidator(1.0)]
    )
    max_num_seqs = models.PositiveIntegerField(
        "max concurrent sequences", default=64, validators=[MinValueValidator(1)]
    )
    cpu_kv_cache_gib = models.FloatField(
        "KV cache size on the CPU (GiB)", default=1.0, validators=[MinValueValidator(0.01)]
    )
    enforce_eager = models.BooleanField(
        default=False,
        help_text="Skip torch.compile and CUDA graphs: starts much faster, runs somewhat slower. On for CPU demos.",
    )
    allow_browser = models.BooleanField(
        "may use the browser tool", default=True, help_text="gpt-oss only, and only where Site settings enable it."
    )
    allow_python = models.BooleanField(
        "may use the python tool", default=True, help_text="gpt-oss only, and only where Site settings enable it."
    )
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def is_harmony(self) -> bool:
        return self.prompt_format == PromptFormat.HARMONY

    def tool_allowed(self, name: str) -> bool:
        """gpt-oss knows its built-in tools from training; a chat template's model does not."""
        return self.is_harmony and {"browser": self.allow_browser, "python": self.allow_python}.get(name, False)
