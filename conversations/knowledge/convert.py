"""Uploaded files as text: what kind a file is (by its bytes, not only its name), the checks
made before any work starts, and the conversion to Markdown pages.

PDFs are read page by page with pypdf, so every passage keeps its page, and the PDF's
outline (bookmarks) gives the headings. DOCX, PPTX (a slide is a page), XLSX, CSV and HTML
go through markitdown, which keeps headings as Markdown. Text and Markdown are decoded as
UTF-8, else as charset_normalizer guesses (GB18030 and Big5 files are common here).

Files are untrusted: an Office file is a zip, opened only after its members' sizes and
compression ratios are checked (a zip bomb is refused unread); a PDF's page count is read
before its text; HTML is converted to text, never rendered.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.utils.translation import gettext

KINDS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".csv": "csv",
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".markdown": "md",
    ".txt": "txt",
}
ACCEPT = ",".join(sorted(KINDS))  # the upload input's accept attribute
TEXT_KINDS = {"csv", "html", "md", "txt"}
ZIP_KINDS = {"docx": "word/", "pptx": "ppt/", "xlsx": "xl/"}
ZIP_MAX_UNPACKED = 50 * 1024 * 1024  # an Office file's members together, unpacked (pandas and
# BeautifulSoup take several times that in memory while converting)
ZIP_MAX_RATIO = 100  # unpacked / packed, per member (ordinary XML compresses 5-20x)
ZIP_MAX_MEMBERS = 10_000


class Refused(Exception):
    """A file chatweb will not index, with the reason as the user reads it."""


@dataclass
class Page:
    number: int | None  # 1-based; None where the format has no pages
    text: str  # Markdown
    heading: str = ""  # the heading path the page starts under (PDF outline)


def clean_name(name: str) -> str:
    """A file name safe to store and show: the last path part only, no control or format
    characters, no leading dots, at most 150 characters with the extension kept."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    stem, dot, ext = name.rpartition(".")
    if dot and len(ext) <= 10:
        name = stem[: 150 - len(ext) - 1].rstrip() + "." + ext
    return name[:150] or "file"


def kind_of(name: str) -> str | None:
    return KINDS.get(Path(name).suffix.lower())


def check(data: bytes, kind: str, *, max_pages: int) -> int | None:
    """Refuse a file whose bytes are not what its name says, a zip bomb, or more pages than
    allowed, before any work starts. Returns its page count where the format has pages."""
    if kind == "pdf":
        if not data[:1024].lstrip().startswith(b"%PDF-"):
            raise Refused(gettext("This is not a PDF file."))
        return _pdf_pages(data, max_pages)
    if kind in ZIP_KINDS:
        pages = _check_zip(data, kind)
        if pages is not None and pages > max_pages:
            raise Refused(_too_many_pages(pages, max_pages))
        return pages
    decode(data)  # text: refused if it is binary
    return None


def _too_many_pages(pages: int, limit: int) -> str:
    return gettext("This file has %(pages)s pages; the limit is %(limit)s.") % {
        "pages": f"{pages:,}",
        "limit": f"{limit:,}",
    }


def _pdf_pages(data: bytes, max_pages: int) -> int:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Refused(gettext("This PDF is encrypted; upload it without a password."))
        pages = len(reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise Refused(gettext("This PDF cannot be read (%(error)s).") % {"error": exc.__class__.__name__}) from None
    if pages > max_pages:
        raise Refused(_too_many_pages(pages, max_pages))
    return pages


def _check_zip(data: bytes, kind: str) -> int | None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise Refused(gettext("This is not a %(kind)s file.") % {"kind": kind.upper()}) from None
    if len(members) > ZIP_MAX_MEMBERS:
        raise Refused(gettext("This file holds too many parts to be an ordinary document."))
    unpacked = sum(m.file_size for m in members)
    bomb = unpacked > ZIP_MAX_UNPACKED or any(
        m.file_size > 1024 * 1024 and m.file_size > ZIP_MAX_RATIO * max(m.compress_size, 1) for m in members
    )
    if bomb:
        raise Refused(gettext("This file unpacks to far more than its size (a zip bomb?); it was not opened."))
    names = [m.filename for m in members]
    if not any(n.startswith(ZIP_KINDS[kind]) for n in names):
        raise Refused(gettext("This is not a %(kind)s file.") % {"kind": kind.upper()})
    if kind == "pptx":
        return sum(bool(re.fullmatch(r"ppt/slides/slide\d+\.xml", n)) for n in names)
    return None


def decode(data: bytes) -> str:
    """Text of a text file: UTF-8 (a BOM dropped), else the encoding charset_normalizer finds."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is None:
            raise Refused(gettext("This file is not text in an encoding chatweb can read.")) from None
        text = str(best)
    if "\x00" in text:
        raise Refused(gettext("This file is not text (it holds NUL characters)."))
    return text


def convert(data: bytes, kind: str) -> list[Page]:
    """The file's text as Markdown pages."""
    if kind == "pdf":
        return _pdf(data)
    if kind in ("md", "txt"):
        return [Page(None, decode(data))]
    from markitdown import MarkItDown, StreamInfo

    text = decode(data) if kind in TEXT_KINDS else None
    stream = io.BytesIO(text.encode("utf-8") if text is not None else data)
    info = StreamInfo(extension=f".{kind}", charset="utf-8" if text is not None else None)
    try:
        markdown = MarkItDown(enable_plugins=False).convert_stream(stream, stream_info=info).markdown
    except Exception as exc:  # noqa: BLE001 - a converter's failure is the file's, explained in place
        raise Refused(
            gettext("This file could not be converted (%(error)s).") % {"error": exc.__class__.__name__}
        ) from None
    if kind == "pptx":
        return _slides(markdown)
    return [Page(None, markdown)]


def _slides(markdown: str) -> list[Page]:
    """markitdown marks each slide with <!-- Slide number: N -->: a slide is a page."""
    parts = re.split(r"<!-- Slide number: (\d+) -->", markdown)
    pages = [Page(int(number), text.strip()) for number, text in zip(parts[1::2], parts[2::2], strict=False)]
    return pages or [Page(None, markdown)]


def _pdf(data: bytes) -> list[Page]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    starts = _outline_starts(reader)
    pages, heading = [], ""
    for number, page in enumerate(reader.pages, start=1):
        heading = starts.get(number, heading)
        try:
            text = page.extract_text() or ""
        except Exception:  # noqa: BLE001 - one unreadable page does not lose the others
            text = ""
        pages.append(Page(number, text.replace("\x00", ""), heading))
    return pages


def _outline_starts(reader) -> dict[int, str]:
    """The PDF's outline as {first page of a section: its heading path}."""
    starts: dict[int, str] = {}

    def walk(items, path: list[str]) -> None:
        last: list[str] = path
        for item in items:
            if isinstance(item, list):
                walk(item, last)
                continue
            try:
                number = reader.get_destination_page_number(item) + 1
                title = " ".join(str(item.title).split())[:120]
            except Exception:  # noqa: BLE001 - a broken bookmark is only a missing heading
                continue
            last = [*path, title]
            starts.setdefault(number, " > ".join(last))

    try:
        walk(reader.outline, [])
    except Exception:  # noqa: BLE001
        return {}
    return starts
