"""Pages of Markdown cut into passages for retrieval.

A passage is at most CHUNK_TOKENS of gpt-oss's own tokens (o200k, as openai_harmony counts
them), so the prompt's token budget is spent exactly. It never crosses a page or a heading:
each keeps its page and its heading path ("Guide > Install"). Inside a section it is packed
from whole sentences (English or Chinese punctuation, or line ends), a sentence longer than a
passage being cut between tokens (never inside a character); the next passage repeats about
OVERLAP_TOKENS of the previous one's last sentences, so a fact cut in two is whole in one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from conversations.knowledge.convert import Page

CHUNK_TOKENS = 240
MAX_HEADING_LINE = 1000  # a longer line is text, not a heading
OVERLAP_TOKENS = 40
HEADING = re.compile(r"(#{1,6})[ \t]+(\S.*)")  # no nested repeats: linear on any line (untrusted)
# A sentence ends at . ! ? (then a space) or at Chinese 。！？；, or a line ends.
SENTENCE = re.compile(r"[^\n]*?(?:[.!?](?=\s)|[。！？；]|\n|$)\s*")  # with the space after it


@functools.cache
def _encoding():
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, allowed_special=set())) if text else 0


@dataclass
class Passage:
    text: str
    heading: str
    page: int | None
    tokens: int


def sections(pages: list[Page]) -> Iterator[tuple[str, int | None, str]]:
    """(heading path, page, text) for each run of a page under one heading."""
    path: list[tuple[int, str]] = []
    for page in pages:
        if page.heading:  # a PDF outline names where the page stands
            path = [(1, part) for part in page.heading.split(" > ")]
        body: list[str] = []
        for line in page.text.splitlines():
            heading = line.startswith("#") and len(line) <= MAX_HEADING_LINE
            match = HEADING.fullmatch(line) if heading else None
            if match:
                yield " > ".join(t for _, t in path), page.number, "\n".join(body)
                body = []
                level = len(match.group(1))
                title = match.group(2).rstrip().rstrip("#").rstrip()  # "## Title ##": the closing hashes go
                path = [(lv, t) for lv, t in path if lv < level] + [(level, title[:200])]
            else:
                body.append(line)
        yield " > ".join(t for _, t in path), page.number, "\n".join(body)


def _sentences(text: str) -> Iterator[str]:
    for match in SENTENCE.finditer(text):
        if match.group().strip():
            yield match.group()


def _pieces(sentence: str, size: int) -> Iterator[tuple[str, int]]:
    """A sentence as parts of at most `size` tokens: its tokens in windows, each window's end
    moved back (at most three tokens) to where its bytes are whole UTF-8 characters."""
    encoding = _encoding()
    ids = encoding.encode(sentence, allowed_special=set())
    if len(ids) <= size:
        yield sentence, len(ids)
        return
    start = 0
    while start < len(ids):
        end = min(start + size, len(ids))
        while True:
            try:
                text = encoding.decode_utf8(ids[start:end])
                break
            except Exception:  # noqa: BLE001 - HarmonyError: a character cut in two
                if end - start <= 1 or end <= min(start + size, len(ids)) - 4:
                    text = encoding.decode(ids[start:end])
                    break
                end -= 1
        if text.strip():
            yield text, end - start
        start = end


def passages(pages: list[Page], *, size: int = CHUNK_TOKENS, overlap: int = OVERLAP_TOKENS) -> list[Passage]:
    out: list[Passage] = []
    for heading, page, text in sections(pages):
        window: list[tuple[str, int]] = []  # sentences of the passage being packed
        for sentence in _sentences(text):
            for piece, n in _pieces(sentence, size):
                if window and sum(t for _, t in window) + n > size:
                    out.append(_passage(window, heading, page))
                    # carry the last sentences, up to `overlap` tokens, into the next one
                    kept, total = [], 0
                    for s, t in reversed(window):
                        if total + t > overlap:
                            break
                        kept.insert(0, (s, t))
                        total += t
                    window = kept
                window.append((piece, n))
        if window:
            out.append(_passage(window, heading, page))
    return [p for p in out if p.text]


def _passage(window: list[tuple[str, int]], heading: str, page: int | None) -> Passage:
    text = "".join(s for s, _ in window).strip()
    return Passage(text=text, heading=heading, page=page, tokens=count_tokens(text))
