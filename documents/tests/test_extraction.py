"""Each format's text comes out with its pages and headings; files are typed by their bytes."""

from __future__ import annotations

import io

import pytest

from documents import samples
from documents.extraction import extract
from documents.files import Refused, clean_name, sniff


def read(data: bytes, name: str):
    file = io.BytesIO(data)
    sniffed = sniff(file, name=name)
    return sniffed, extract(file, kind=sniffed.kind, encoding=sniffed.encoding)


def texts(extracted) -> list[str]:
    return [block.text for block in extracted.blocks]


def test_plain_text_is_split_into_paragraphs():
    sniffed, extracted = read(b"First paragraph.\n\nSecond one\nwith two lines.\n", "notes.txt")
    assert sniffed.kind == "text"
    assert texts(extracted) == ["First paragraph.", "Second one\nwith two lines."]
    assert extracted.pages is None


def test_markdown_paragraphs_carry_their_heading_and_fenced_hashes_are_code():
    source = b"# Guide\n\nIntro text.\n\n## Install\n\nRun it.\n\n```\n# not a heading\n```\n"
    sniffed, extracted = read(source, "guide.md")
    assert sniffed.kind == "markdown"
    by_text = {block.text: block.heading for block in extracted.blocks}
    assert by_text["Intro text."] == "Guide"
    assert by_text["Run it."] == "Install"
    assert by_text["```\n# not a heading\n```"] == "Install"


def test_csv_rows_name_their_columns():
    sniffed, extracted = read(b"city,population\nOslo,709000\nBergen,291000\n", "cities.csv")
    assert sniffed.kind == "csv"
    assert texts(extracted) == ["city: Oslo; population: 709000", "city: Bergen; population: 291000"]


def test_html_is_read_as_text_without_its_scripts_or_styles():
    page = (
        b"<!doctype html><html><head><title>T</title><style>p{color:red}</style></head><body>"
        b"<h1>Report</h1><p>Revenue grew <b>12%</b>.</p><script>alert('x')</script></body></html>"
    )
    sniffed, extracted = read(page, "report.txt")  # the name says text; the bytes say HTML
    assert sniffed.kind == "html"
    assert texts(extracted) == ["Report", "Revenue grew 12%."]
    assert extracted.blocks[1].heading == "Report"
    assert "alert" not in " ".join(texts(extracted))


def test_pdf_text_keeps_its_page_numbers():
    data = samples.pdf_bytes(["Page one text.", "Page two text.", "On page three the owls number 42."])
    sniffed, extracted = read(data, "owls.pdf")
    assert sniffed.kind == "pdf"
    assert extracted.pages == 3
    assert [(block.page, block.text) for block in extracted.blocks] == [
        (1, "Page one text."),
        (2, "Page two text."),
        (3, "On page three the owls number 42."),
    ]


def test_docx_headings_tables_and_page_breaks():
    data = samples.docx_bytes(
        [("h1", "Summary"), ("p", "The plan is simple."), ("h2", "Budget"), ("p", "It costs 30 pounds.")],
        table=[["item", "cost"], ["tea", "3"]],
        page_break_after={1},
    )
    sniffed, extracted = read(data, "plan.docx")
    assert sniffed.kind == "docx"
    blocks = [(block.page, block.heading, block.text) for block in extracted.blocks]
    assert (1, "Summary", "The plan is simple.") in blocks
    assert (2, "Budget", "It costs 30 pounds.") in blocks
    assert (2, "Budget", "tea | 3") in blocks
    assert extracted.pages == 2


def test_the_type_comes_from_the_bytes_not_the_name():
    pdf_named_txt, _ = read(samples.pdf_bytes(["x marks the spot"]), "innocent.txt")
    text_named_pdf, _ = read(b"just words", "report.pdf")
    assert (pdf_named_txt.kind, text_named_pdf.kind) == ("pdf", "text")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (samples.PNG_BYTES, "unsupported_type"),
        (samples.ELF_BYTES, "unsupported_type"),
        (samples.RANDOM_BINARY, "binary"),
        (samples.SVG_BYTES, "unsupported_type"),
        (samples.plain_zip_bytes(), "unsupported_type"),
        (b"", "empty"),
    ],
    ids=["png", "elf", "random-binary", "svg", "zip", "empty"],
)
def test_binary_and_unsupported_files_are_refused_by_content(data, code):
    with pytest.raises(Refused) as refused:
        sniff(io.BytesIO(data), name="harmless.txt")
    assert refused.value.code == code
    assert refused.value.message


def test_an_encrypted_pdf_is_refused():
    with pytest.raises(Refused, match="encrypted") as refused:
        read(samples.encrypted_pdf_bytes(["secret plans"]), "locked.pdf")
    assert refused.value.code == "encrypted"


def test_a_corrupt_pdf_is_refused():
    data = samples.pdf_bytes(["one", "two"])
    with pytest.raises(Refused) as refused:
        read(data[: len(data) // 3] + b"\x00garbage" * 50, "broken.pdf")
    assert refused.value.code == "corrupt"


def test_a_pdf_without_text_is_refused_as_probably_scanned():
    with pytest.raises(Refused, match="scanned") as refused:
        read(samples.pdf_bytes(["", ""]), "scan.pdf")
    assert refused.value.code == "no_text"


def test_a_pdf_over_the_page_limit_is_refused(settings):
    settings.DOCUMENTS_MAX_PAGES = 3
    with pytest.raises(Refused, match="4 pages") as refused:
        read(samples.pdf_bytes(["a", "b", "c", "d"]), "long.pdf")
    assert refused.value.code == "too_many_pages"


def test_text_over_the_extracted_text_limit_is_refused(settings):
    settings.DOCUMENTS_MAX_TEXT_CHARS = 1000
    with pytest.raises(Refused) as refused:
        read(b"word " * 400, "long.txt")
    assert refused.value.code == "too_much_text"


def test_a_docx_zip_bomb_is_refused_before_it_is_inflated(settings):
    settings.DOCUMENTS_MAX_UNCOMPRESSED_BYTES = 10 * 1024 * 1024
    with pytest.raises(Refused) as refused:
        read(samples.zip_bomb_docx_bytes(20 * 1024 * 1024), "bomb.docx")
    assert refused.value.code == "zip_bomb"


def test_a_docx_part_that_inflates_a_thousandfold_is_refused_even_under_the_total_limit():
    with pytest.raises(Refused) as refused:
        read(samples.zip_bomb_docx_bytes(20 * 1024 * 1024), "bomb.docx")
    assert refused.value.code == "zip_bomb"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ('a<b>c:"d"|e?.txt', "a_b_c__d__e_.txt"),
        ("line\nbreak\x00.md", "linebreak.md"),
        ("   ...   ", "attachment"),
        ("x" * 300 + ".pdf", "x" * 116 + ".pdf"),
    ],
)
def test_file_names_are_sanitised(raw, clean):
    assert clean_name(raw) == clean
