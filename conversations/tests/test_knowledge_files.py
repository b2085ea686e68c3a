"""Files into passages: what each format gives (pages, headings), the checks made before any
work starts (kind by bytes, zip bombs, page counts), names made safe, and the chunker's
promises (token limit, overlap, page and heading kept). No worker, no database."""

from __future__ import annotations

import pytest

from chatweb.testing.documents import make_docx, make_pdf, make_pptx, make_xlsx, zip_bomb
from conversations.knowledge import convert
from conversations.knowledge.chunking import CHUNK_TOKENS, count_tokens, passages
from conversations.knowledge.convert import Page, Refused


def test_a_pdf_keeps_its_pages_and_its_outline_gives_the_headings():
    pdf = make_pdf(
        ["Welcome to the handbook.", "The vault code is PELICAN-42.", "Closing words."],
        outline=[("Introduction", 1), ("Security", 2)],
    )
    assert convert.check(pdf, "pdf", max_pages=10) == 3
    found = passages(convert.convert(pdf, "pdf"))
    assert [(p.page, p.heading) for p in found] == [(1, "Introduction"), (2, "Security"), (3, "Security")]
    assert "PELICAN-42" in found[1].text


def test_office_files_keep_headings_and_slides_are_pages():
    docx = make_docx([("Heading1", "Guide"), ("", "Body one."), ("Heading2", "Install"), ("", "Run setup.exe.")])
    found = passages(convert.convert(docx, "docx"))
    assert [(p.heading, p.text) for p in found] == [("Guide", "Body one."), ("Guide > Install", "Run setup.exe.")]

    pptx = make_pptx([("Roadmap", "Ship in May."), ("Budget", "Twelve thousand.")])
    assert convert.check(pptx, "pptx", max_pages=5) == 2
    found = passages(convert.convert(pptx, "pptx"))
    assert [(p.page, p.heading) for p in found] == [(1, "Roadmap"), (2, "Budget")]

    xlsx = make_xlsx({"Prices": [["item", "price"], ["green tea", "3"]]})
    (only,) = passages(convert.convert(xlsx, "xlsx"))
    assert only.heading == "Prices" and "green tea" in only.text


def test_html_is_read_as_text_and_its_scripts_are_dropped():
    html = b"<html><body><h1>Notes</h1><script>alert('x')</script><p>Plain <b>fact</b>.</p></body></html>"
    (only,) = passages(convert.convert(html, "html"))
    assert only.heading == "Notes" and "fact" in only.text and "alert" not in only.text


def test_chinese_text_in_gb18030_is_decoded():
    text = "# 退款政策\n\n购买后三十天内可以申请全额退款。"
    (only,) = passages(convert.convert(text.encode("gb18030"), "md"))
    assert only.heading == "退款政策" and only.text == "购买后三十天内可以申请全额退款。"


@pytest.mark.parametrize(
    ("data", "kind", "says"),
    [
        (b"<html>not a pdf</html>", "pdf", "not a PDF"),
        (b"%PDF-1.4 garbage", "pdf", "cannot be read"),
        (b"plain text", "docx", "not a DOCX"),
        (make_xlsx({"a": [["1"]]}), "docx", "not a DOCX"),  # a zip, but of another kind
        (b"\x00\x01\x02binary", "txt", "not text"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_is_refused(data, kind, says):
    with pytest.raises(Refused, match=says):
        convert.check(data, kind, max_pages=100)


def test_a_zip_bomb_is_refused_before_it_is_unpacked():
    bomb = zip_bomb("docx", megabytes=300)
    assert len(bomb) < 2_000_000
    with pytest.raises(Refused, match="zip bomb"):
        convert.check(bomb, "docx", max_pages=100)


def test_a_pdf_with_thousands_of_pages_is_refused_by_its_page_count():
    pdf = make_pdf(["x"] * 3000)
    with pytest.raises(Refused, match="3,000 pages; the limit is 500"):
        convert.check(pdf, "pdf", max_pages=500)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/var/www/static/x.html", "x.html"),
        (".htaccess", "htaccess"),
        ("a\x00b\u202etxt.exe.md", "abtxt.exe.md"),  # NUL and a right-to-left override dropped
        ("", "file"),
        ("报告 2026.pdf", "报告 2026.pdf"),
    ],
)
def test_names_are_made_safe(given, kept):
    assert convert.clean_name(given) == kept


def test_a_long_name_keeps_its_extension():
    name = convert.clean_name("x" * 400 + ".pdf")
    assert len(name) == 150 and name.endswith(".pdf")


def test_passages_stay_within_the_token_limit_and_overlap():
    sentences = " ".join(f"Sentence number {i} says something about topic {i % 7}." for i in range(300))
    found = passages([Page(4, f"# Long\n\n{sentences}")])
    assert len(found) > 5
    assert all(p.tokens <= CHUNK_TOKENS and p.page == 4 and p.heading == "Long" for p in found)
    assert all(p.tokens == count_tokens(p.text) for p in found)
    for before, after in zip(found, found[1:], strict=False):
        last = before.text.rsplit("Sentence number", 1)[1]
        assert last in after.text  # the last sentence is repeated at the start of the next passage


def test_a_passage_never_cuts_a_character_in_two():
    found = passages([Page(None, "汉字𠀀😀" * 3000)])  # no sentence end anywhere
    assert len(found) > 10
    assert all("\ufffd" not in p.text and p.tokens <= CHUNK_TOKENS for p in found)
    assert "".join(p.text for p in found) == "汉字𠀀😀" * 3000


@pytest.mark.parametrize(
    ("step", "said"),
    [
        ({"files": 1, "passages": 3, "seconds": 0.0645}, "Searched 1 file: 3 passages · 65 ms"),  # half up, as the page
        ({"files": 2, "passages": 1, "seconds": 0.0125}, "Searched 2 files: 1 passage · 13 ms"),
        ({"files": "x", "passages": None, "status": "failed"}, "Searched 0 files: 0 passages · failed"),
    ],
)
def test_the_search_step_reads_as_the_chat_page_says_it(step, said):
    from conversations.builtin import steps

    assert steps.headline({"kind": "knowledge", "status": "done", **step}) == said


def test_a_hostile_heading_line_is_read_in_linear_time():
    """A heading regex with nested repeats took hours on "# x" + 20,000 spaces + "y", holding
    the GIL and so the whole knowledge worker (its lease, its consumer)."""
    import time

    started = time.perf_counter()
    found = passages([Page(None, "# x" + " " * 20_000 + "y\n\n" + "## T" + " \t" * 400 + "z #\n\nbody")])
    assert time.perf_counter() - started < 2
    assert found[-1].heading.startswith("T \t") and found[-1].text == "body"
    assert found[0].text.startswith("# x")  # a line too long for a heading is text
