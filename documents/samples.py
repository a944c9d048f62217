"""Files made in code, for the retrieval check and the tests: PDFs written by hand, DOCX by python-docx, hostile ones too."""

from __future__ import annotations

import io
import zipfile

import docx
from pypdf import PdfReader, PdfWriter


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf_bytes(pages: list[str]) -> bytes:
    """A real PDF, one page per string (lines split on newlines), in Helvetica.

    Objects: 1 catalog, 2 page tree, 3 font, then a page and its content
    stream per page; a correct cross-reference table at the end.
    """
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] /Count {len(pages)} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for page_id, text in zip(page_ids, pages, strict=True):
        lines = text.split("\n")
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 760 Td"]
        for line in lines:
            ops.append(f"{_pdf_string(line)} Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252") if text else b""
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode()
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n")
    xref = out.tell()
    count = max(objects) + 1
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % count)
    for number in range(1, count):
        out.write(b"%010d 00000 n \n" % offsets[number])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref))
    return out.getvalue()


def encrypted_pdf_bytes(pages: list[str], password: str = "secret") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password=password, owner_password=password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(
    items: list[tuple[str, str]],
    *,
    table: list[list[str]] | None = None,
    page_break_after: set[int] = frozenset(),
) -> bytes:
    """A Word document: items are ("h1"|"h2"|"p", text); a page break after the listed item indexes."""
    document = docx.Document()
    for index, (kind, text) in enumerate(items):
        if kind.startswith("h"):
            document.add_heading(text, level=int(kind[1:]))
        else:
            document.add_paragraph(text)
        if index in page_break_after:
            document.add_page_break()
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bomb_docx_bytes(inflated_bytes: int) -> bytes:
    """A valid Word document with one more part of `inflated_bytes` zeros (deflates ~1000:1)."""
    out = io.BytesIO(docx_bytes([("p", "An innocent looking document.")]))
    with (
        zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/media/padding.bin", "w", force_zip64=True) as member,
    ):
        block = b"\x00" * (1024 * 1024)
        for _ in range(inflated_bytes // len(block)):
            member.write(block)
    return out.getvalue()


def plain_zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "not a word document")
    return out.getvalue()


PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
ELF_BYTES = b"\x7fELF\x02\x01\x01" + bytes(200)
RANDOM_BINARY = bytes((i * 7919 + 13) % 256 for i in range(4096))
SVG_BYTES = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
