from __future__ import annotations

from django.contrib import admin

from inference_worker import presence
from inference_worker.models import ChatModel


@admin.register(ChatModel)
class ChatModelAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "queue", "prompt_format", "context_length", "dtype", "enabled", "workers")
    list_filter = ("enabled", "prompt_format")
    search_fields = ("name", "display_name", "path")
    fieldsets = (
        (None, {"fields": ("name", "display_name", "description", "path", "queue", "prompt_format", "enabled")}),
        (
            "Defaults for new conversations",
            {"fields": ("default_temperature", "default_top_p", "default_max_tokens", "default_reasoning_effort")},
        ),
        (
            "Built-in tools (gpt-oss; each also needs Site settings to enable it)",
            {"fields": ("allow_browser", "allow_python")},
        ),
        (
            "Engine (read by a worker when it starts)",
            {
                "fields": (
                    "context_length",
                    "dtype",
                    "max_num_seqs",
                    "tensor_parallel_size",
                    "gpu_memory_utilization",
                    "cpu_kv_cache_gib",
                    "enforce_eager",
                )
            },
        ),
    )

    def changelist_view(self, request, extra_context=None):
        try:
            self._beats = presence.live_workers()
        except Exception:  # noqa: BLE001 - Redis down: show the rows anyway
            self._beats = None
        return super().changelist_view(request, extra_context)

    @admin.display(description="live workers")
    def workers(self, model: ChatModel) -> str:
        beats = getattr(self, "_beats", None)
        if beats is None:
            return "unknown (Redis unreachable)"
        mine = [b for b in beats if b.get("model") == model.name]
        if not mine:
            return "none"
        return ", ".join(f"{b['name'].split('@')[0]} ({b['state']})" for b in mine)
