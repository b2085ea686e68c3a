"""Test documents made on the spot: PDFs (text in Helvetica, one string per page, with an
optional outline), Office files built from their XML parts, a zip bomb. Small and exact, so a
test knows which page says what."""

from __future__ import annotations

import io
import zipfile


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: list[str], outline: list[tuple[str, int]] | None = None) -> bytes:
    """A PDF whose page i (1-based) shows pages[i-1], line by line; `outline` is a flat list
    of (title, page number) bookmarks. Latin-1 text only (the standard Helvetica font)."""
    objects: list[bytes] = []

    def add(body: str | bytes) -> int:
        objects.append(body.encode("latin-1") if isinstance(body, str) else body)
        return len(objects)

    catalog = add("")  # filled in below
    tree = add("")
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_ids = []
    for text in pages:
        lines = [
            f"BT /F1 11 Tf 72 {760 - 14 * i} Td {_pdf_string(line)} Tj ET" for i, line in enumerate(text.split("\n"))
        ]
        stream = "\n".join(lines).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page_ids.append(
            add(
                f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"
            )
        )
    objects[tree - 1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {len(page_ids)} >>"
    ).encode()
    outlines = ""
    if outline:
        root = len(objects) + 1
        first = root + 1
        items = []
        for i, (title, number) in enumerate(outline):
            me = first + i
            links = f"/Parent {root} 0 R"
            if i:
                links += f" /Prev {me - 1} 0 R"
            if i < len(outline) - 1:
                links += f" /Next {me + 1} 0 R"
            items.append(f"<< /Title {_pdf_string(title)} {links} /Dest [{page_ids[number - 1]} 0 R /Fit] >>")
        add(f"<< /Type /Outlines /First {first} 0 R /Last {first + len(outline) - 1} 0 R /Count {len(outline)} >>")
        for item in items:
            add(item)
        outlines = f" /Outlines {root} 0 R"
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R{outlines} >>".encode()
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref))
    return out.getvalue()


def make_zip(parts: dict[str, str | bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in parts.items():
            archive.writestr(name, body)
    return out.getvalue()


PKG = "http://schemas.openxmlformats.org/package/2006"
OFFICE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
WORD_ML = "application/vnd.openxmlformats-officedocument.wordprocessingml"
XML = '<?xml version="1.0" encoding="UTF-8"?>'


def make_docx(paragraphs: list[tuple[str, str]]) -> bytes:
    """A DOCX of (style, text) paragraphs; style "Heading1", "Heading2" or "" (body)."""
    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'

    def paragraph(style: str, text: str) -> str:
        props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
        return f"<w:p>{props}<w:r><w:t>{text}</w:t></w:r></w:p>"

    body = "".join(paragraph(style, text) for style, text in paragraphs)
    styles = "".join(
        f'<w:style w:type="paragraph" w:styleId="Heading{n}"><w:name w:val="heading {n}"/></w:style>' for n in (1, 2, 3)
    )
    return make_zip(
        {
            "[Content_Types].xml": (
                f'{XML}<Types xmlns="{PKG}/content-types">'
                '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                '<Default Extension="xml" ContentType="application/xml"/>'
                f'<Override PartName="/word/document.xml" ContentType="{WORD_ML}.document.main+xml"/>'
                f'<Override PartName="/word/styles.xml" ContentType="{WORD_ML}.styles+xml"/>'
                "</Types>"
            ),
            "_rels/.rels": (
                f'{XML}<Relationships xmlns="{PKG}/relationships">'
                f'<Relationship Id="rId1" Type="{OFFICE}/officeDocument" Target="word/document.xml"/>'
                "</Relationships>"
            ),
            "word/_rels/document.xml.rels": (
                f'{XML}<Relationships xmlns="{PKG}/relationships">'
                f'<Relationship Id="rId1" Type="{OFFICE}/styles" Target="styles.xml"/>'
                "</Relationships>"
            ),
            "word/styles.xml": f"{XML}<w:styles {ns}>{styles}</w:styles>",
            "word/document.xml": f"{XML}<w:document {ns}><w:body>{body}</w:body></w:document>",
        }
    )


def make_pptx(slides: list[tuple[str, str]]) -> bytes:
    """A PPTX of (title, body) slides, made with python-pptx (markitdown's own dependency)."""
    from pptx import Presentation

    deck = Presentation()
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_xlsx(sheets: dict[str, list[list[str]]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def zip_bomb(kind: str = "docx", megabytes: int = 300) -> bytes:
    """An Office-named zip whose one member unpacks to `megabytes` of zeros (about 300 KB packed)."""
    prefix = {"docx": "word/", "pptx": "ppt/", "xlsx": "xl/"}[kind]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{prefix}document.xml", "w", force_zip64=True) as member:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(megabytes):
                member.write(chunk)
    return out.getvalue()


def client_for(user):
    """A Django test client signed in as `user`."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def upload(client, name: str, data: bytes, **target) -> dict:
    """POST a file to /knowledge/upload (`conversation=` or `collection=` an id): the JSON
    answer, with the HTTP status as "http"."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post("/knowledge/upload", {"file": SimpleUploadedFile(name, data), **target})
    return {**response.json(), "http": response.status_code}
