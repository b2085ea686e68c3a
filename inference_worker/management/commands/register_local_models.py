from __future__ import annotations

import shutil
import subprocess

from django.conf import settings
from django.core.management.base import BaseCommand

from inference_worker.local_models import SMOLLM2, TINY_GPT_OSS, is_built
from inference_worker.models import ChatModel, PromptFormat

GPT_OSS_20B = {
    "name": "gpt-oss-20b",
    "display_name": "gpt-oss-20b",
    "description": "OpenAI's open-weight reasoning model",
    "path": "openai/gpt-oss-20b",
    "queue": "gpt-oss-20b",
    "prompt_format": PromptFormat.HARMONY,
    "context_length": 32768,
    "dtype": "auto",
    "default_temperature": 1.0,
    "default_max_tokens": 4096,
    "max_num_seqs": 128,
}


def gpu_present() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


class Command(BaseCommand):
    help = "Create model rows for the locally built models (and gpt-oss-20b where a GPU is present)."

    def add_arguments(self, parser):
        parser.add_argument("--gpu", action="store_true", help="register gpt-oss-20b even if no GPU is seen")

    def handle(self, *args, gpu: bool = False, **options):
        local = {
            SMOLLM2: {
                "display_name": "SmolLM2 135M Instruct",
                "description": "small CPU demo model",
                "queue": SMOLLM2,
                "prompt_format": PromptFormat.CHAT_TEMPLATE,
                "context_length": 4096,
                # Measured on a 2-core AVX2 machine (bench/worker_throughput.py): float32
                # batches far better than bfloat16 without native bf16 matmuls (88.7 vs
                # 33.8 tok/s at 8 concurrent), and greedy float32 gets the facts right.
                "dtype": "float32",
                "default_temperature": 0.7,
                "default_max_tokens": 512,
                "cpu_kv_cache_gib": 1.0,
                "enforce_eager": True,
                "enabled": True,
            },
            TINY_GPT_OSS: {
                "display_name": "Tiny gpt-oss (random weights)",
                "description": "test model for the harmony path: its output is noise",
                "queue": TINY_GPT_OSS,
                "prompt_format": PromptFormat.HARMONY,
                "context_length": 4096,
                "dtype": "bfloat16",
                "default_max_tokens": 256,
                "cpu_kv_cache_gib": 0.5,
                "enforce_eager": True,
                "enabled": False,
            },
        }
        for name, defaults in local.items():
            folder = settings.MODELS_DIR / name
            if not is_built(folder):
                self.stdout.write(f"{name}: not built yet, skipped (python -m inference_worker.local_models build)")
                continue
            row, created = ChatModel.objects.get_or_create(name=name, defaults={**defaults, "path": str(folder)})
            if not created and row.path != str(folder):
                row.path = str(folder)
                row.save(update_fields=["path"])
            self.stdout.write(f"{name}: {'registered' if created else 'present'}")
        if gpu or gpu_present():
            _, created = ChatModel.objects.get_or_create(name=GPT_OSS_20B["name"], defaults=GPT_OSS_20B)
            self.stdout.write(f"gpt-oss-20b: {'registered' if created else 'present'}")
