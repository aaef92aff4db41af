"""opea_new_runtime.documents: each format's text, each refusal with its status, never another exception, chunks."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opea_new_runtime.documents import FORMATS, MAX_FILE_BYTES, DocumentError, chunk, chunk_spans, parse

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tiny_pdf(*pages: str) -> bytes:
    """A minimal valid PDF written by hand: one page per text, each a Helvetica text object; xref offsets exact."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * index} 0 R" for index in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
                       f" /Contents {5 + 2 * index} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    document = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(document))
        document += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(document)
    document += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    document += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    document += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(document)


def refusal(filename: str, data: bytes, content_type: str | None = None) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        parse(filename, data, content_type)
    return caught.value


# ---- each format's text

def test_text_and_markdown_are_their_text() -> None:
    assert parse("notes.txt", "Caf\u00e9 opens at nine.\r\nClosed on Sundays.  \n".encode()) == \
        "Caf\u00e9 opens at nine.\nClosed on Sundays."
    assert parse("notes.txt", b"\xef\xbb\xbfWith a byte order mark") == "With a byte order mark"
    markdown = "# Returns\n\nItems can be **returned** within [30 days](https://example.com)."
    assert parse("policy.md", markdown.encode()) == markdown
    assert parse("POLICY.MARKDOWN", markdown.encode()) == markdown


def test_html_is_its_visible_text() -> None:
    page = (b"<!doctype html><html><head><title>Store hours</title><style>p {color: red}</style>"
            b"<script>var hidden = 'script words';</script></head><body><nav>Home | About</nav>"
            b"<h1>Opening</h1><p>We open at <b>nine</b> o'clock.</p><ul><li>Monday</li><li>Friday</li></ul>"
            b"<noscript>enable javascript</noscript></body></html>")
    assert parse("hours.html", page) == "Store hours\nOpening\nWe open at nine o'clock.\nMonday\nFriday"
    assert parse("hours.htm", "<p>caf\xe9</p>".encode("latin-1"), "text/html; charset=ISO-8859-1") == "caf\u00e9"


def test_pdf_is_the_text_of_its_pages() -> None:
    text = parse("report.pdf", tiny_pdf("Revenue grew nine percent", "Footwear led the growth"))
    assert re.sub(r"\s+", " ", text) == "Revenue grew nine percent Footwear led the growth"
    assert "\n\n" in text  # pages are paragraphs, so the splitter cuts between them first


def test_json_and_csv_are_lines_of_their_values() -> None:
    data = {"store": {"name": "Main Street", "hours": [9, 17]}, "open": True, "closed": None}
    assert parse("store.json", json.dumps(data).encode()) == \
        "store.name: Main Street\nstore.hours: 9\nstore.hours: 17\nopen: True"
    assert parse("people.csv", b"name,role\nAda,engineer\nGrace,admiral\n") == \
        "name: Ada; role: engineer\nname: Grace; role: admiral"


def test_without_a_known_suffix_the_content_type_decides() -> None:
    assert parse("https://example.com/", b"<p>Linked page</p>", "text/html; charset=utf-8") == "Linked page"
    assert parse("download", tiny_pdf("From a link"), "application/pdf") == "From a link"
    assert parse("notes.txt", b"<p>kept as text</p>", "text/html") == "<p>kept as text</p>"  # the suffix wins


# ---- refusals and their statuses

def test_an_empty_file_is_400_and_an_oversized_one_413() -> None:
    assert refusal("empty.txt", b"").status == 400
    oversized = refusal("big.txt", b"a" * (MAX_FILE_BYTES + 1))
    assert oversized.status == 413 and "limit" in str(oversized)
    assert parse("limit.txt", b"a" * MAX_FILE_BYTES)[:3] == "aaa"


def test_an_unknown_format_is_415_naming_the_supported_ones() -> None:
    for filename, content_type in [("slides.pptx", None), ("archive", "application/zip"), ("noext", None)]:
        error = refusal(filename, b"PK\x03\x04 some bytes", content_type)
        assert error.status == 415 and all(suffix in str(error) for suffix in FORMATS)


def test_binary_or_undecodable_bytes_in_a_text_format_are_415() -> None:
    assert refusal("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").status == 415
    assert refusal("latin.md", "caf\xe9".encode("latin-1")).status == 415
    assert refusal("page.html", b"<p>\xff\xfe</p>").status == 415
    assert refusal("data.json", b"\x00{}").status == 415


def test_malformed_or_textless_files_are_422() -> None:
    assert refusal("fake.pdf", b"this is not a PDF at all").status == 422
    assert refusal("cut.pdf", tiny_pdf("whole")[:120]).status == 422
    assert refusal("scan.pdf", tiny_pdf("")).status == 422  # a PDF without text (a scan): nothing to retrieve
    assert refusal("blank.txt", b" \n\t\n").status == 422
    assert refusal("app.html", b"<html><script>only()</script><style>a{}</style></html>").status == 422
    assert refusal("broken.json", b'{"a": ').status == 422
    assert refusal("deep.json", b"[" * 100_000 + b"]" * 100_000).status == 422
    assert refusal("huge-field.csv", b"a\n" + b"x" * 200_000).status == 422


BEGINNINGS = [b"", b"%PDF-1.4\n", b"<html><body>", b"<p>", b'{"a": ', b"[", b"a,b\n", b"# Title\n", b"\xef\xbb\xbf",
              tiny_pdf("x")[:200]]


@EXAMPLES
@given(suffix=st.sampled_from([*FORMATS, ".bin", ""]),
       data=st.builds(bytes.__add__, st.sampled_from(BEGINNINGS), st.binary(max_size=2000) | st.text(max_size=500).map(
           str.encode)),
       content_type=st.sampled_from([None, "text/html", "application/pdf", "text/plain; charset=bogus",
                                     "text/plain; charset=utf-16"]))
def test_any_bytes_give_text_or_a_document_error(suffix: str, data: bytes, content_type: str | None) -> None:
    try:
        text = parse(f"file{suffix}", data, content_type)
    except DocumentError as error:
        assert error.status in (400, 413, 415, 422) and str(error)
    else:
        assert text.strip() and "\x00" not in text


@EXAMPLES
@given(damage=st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=8)), max_size=4))
def test_damaged_pdfs_give_text_or_a_422(damage: list[tuple[int, bytes]]) -> None:
    document = bytearray(tiny_pdf("Some words", "More words"))
    for offset, garbage in damage:
        position = offset % len(document)
        document[position:position + len(garbage)] = garbage
    try:
        parse("damaged.pdf", bytes(document))
    except DocumentError as error:
        assert error.status == 422


# ---- chunks

def test_chunks_cut_at_paragraphs_first() -> None:
    text = "First paragraph about returns.\n\nSecond paragraph about shipping.\n\nThird about hours."
    assert chunk(text, 40, 0) == ["First paragraph about returns.", "Second paragraph about shipping.",
                                  "Third about hours."]
    assert chunk(text, 1500, 100) == [text]
    assert chunk("  \n\n ", 10, 2) == [] and chunk("", 10, 2) == []


def test_consecutive_chunks_share_about_the_overlap() -> None:
    text = " ".join(f"word{index:03d}" for index in range(200))  # 8-character words
    pieces = chunk(text, 100, 30)
    assert all(len(piece) <= 100 for piece in pieces)
    for before, after in zip(pieces, pieces[1:], strict=False):
        shared = next(length for length in range(min(len(before), len(after)), -1, -1)
                      if before.endswith(after[:length]))
        assert 20 <= shared <= 30


def test_text_without_separators_is_cut_into_characters() -> None:
    pieces = chunk("x" * 1000, 100, 10)
    assert all(len(piece) <= 100 for piece in pieces) and sum(len(piece) for piece in pieces) >= 1000


@pytest.mark.parametrize("size, overlap", [(0, 0), (-5, 0), (10, -1), (10, 10), (10, 11)])
def test_impossible_sizes_are_value_errors(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk_"):
        chunk("some text", size, overlap)


@EXAMPLES
@given(text=st.text(alphabet=st.sampled_from("ab .\n"), max_size=600) | st.text(max_size=300),
       size=st.integers(1, 120), overlap_share=st.floats(0, 0.9))
def test_chunks_are_bounded_nonempty_in_order_and_cover_the_text(text: str, size: int, overlap_share: float) -> None:
    overlap = int(size * overlap_share)
    spans = chunk_spans(text, size, overlap)
    pieces = chunk(text, size, overlap)
    assert pieces == [text[start:end].strip() for start, end in spans if text[start:end].strip()]
    assert all(piece and len(piece) <= size for piece in pieces)
    covered = 0
    for start, end in spans:
        assert start <= covered and end > covered  # no gap, always forward
        assert covered - start <= overlap  # what is shared with the chunk before is at most the overlap
        covered = end
    assert covered == len(text) or not text
