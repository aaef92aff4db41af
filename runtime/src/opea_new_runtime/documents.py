"""What a dataprep service reads from a file: its text (`parse`), cut into chunks (`chunk`).

    parse(filename, data, content_type)   the text of a text, Markdown, HTML, PDF, JSON or CSV file, or a
                                          DocumentError whose `status` is the HTTP answer (400, 413, 415, 422)
    chunk(text, size, overlap)            OPEA's chunk_size / chunk_overlap: pieces of at most `size`
                                          characters, consecutive ones sharing about `overlap`

The format is the file name's suffix (FORMATS), else its content type (a link's
answer has one, `https://host/` no suffix). HTML is its visible text
(BeautifulSoup with the stdlib's html.parser; scripts, styles and navigation
dropped), Markdown is kept as it is (its words are what retrieval matches), a
PDF is the text of its pages (pypdf), JSON the `key: value` lines of its leaves,
CSV one `column: value` line per row. Any bytes at all give a text or a
DocumentError, never another exception: a malformed file is the sender's
problem, not a 500.

The splitter is written here, the way langchain's RecursiveCharacterTextSplitter
(which OPEA's dataprep uses) works, rather than imported from
langchain-text-splitters, because that drags langchain-core and langsmith into
every dataprep image.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections import deque
from pathlib import PurePosixPath

__all__ = ["FORMATS", "MAX_FILE_BYTES", "DocumentError", "chunk", "chunk_spans", "parse"]

MAX_FILE_BYTES = 25 * 1024 * 1024
FORMATS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".pdf": "pdf", ".json": "json", ".csv": "csv",
}
CONTENT_TYPES: dict[str, str] = {
    "text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown", "text/html": "html",
    "application/xhtml+xml": "html", "application/pdf": "pdf", "application/json": "json", "text/csv": "csv",
}
HIDDEN_HTML = ("script", "style", "noscript", "template", "iframe", "svg", "nav")
HTML_BLOCKS = ("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "footer",
               "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol", "p", "pre", "section", "table",
               "td", "th", "title", "tr", "ul")
SEPARATORS = ("\n\n", "\n", ". ", " ")


class DocumentError(ValueError):
    """A file or link that cannot be ingested; `status` is the HTTP status to answer (400, 413, 415, 422)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse(filename: str, data: bytes, content_type: str | None = None) -> str:
    """The text of the file `filename` holding `data`; DocumentError when there is none to be had."""
    if not data:
        raise DocumentError(f"{filename} is empty", 400)
    if len(data) > MAX_FILE_BYTES:
        raise DocumentError(f"{filename} is {len(data):,} bytes, over the limit of {MAX_FILE_BYTES:,}", 413)
    media_type, charset = split_content_type(content_type)
    suffix = PurePosixPath(filename).suffix.lower()
    kind = FORMATS.get(suffix) or CONTENT_TYPES.get(media_type)
    if kind is None:
        supported = ", ".join(sorted(FORMATS))
        raise DocumentError(f"{filename}: unsupported format {suffix or media_type or '(no suffix)'} "
                            f"(supported: {supported})", 415)
    text = PARSERS[kind](filename, data, charset).replace("\x00", "")  # a PDF's text may hold NULs; no store takes them
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")).strip()
    if not text:
        raise DocumentError(f"{filename} has no text", 422)
    return text


def split_content_type(content_type: str | None) -> tuple[str, str | None]:
    """`text/html; charset=latin-1` → ("text/html", "latin-1"), the charset only when Python knows it."""
    media_type, _, parameters = (content_type or "").partition(";")
    charset = None
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            try:
                charset = codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                charset = None
    return media_type.strip().lower(), charset


def decoded(filename: str, data: bytes, charset: str | None) -> str:
    """`data` as text (UTF-8 unless the content type said otherwise); 415 for binary bytes."""
    if b"\x00" in data:
        raise DocumentError(f"{filename} holds binary data, not text", 415)
    try:
        return data.decode(charset or "utf-8-sig")
    except (UnicodeDecodeError, LookupError):
        raise DocumentError(f"{filename} is not {charset or 'UTF-8'} text", 415) from None


def plain_text(filename: str, data: bytes, charset: str | None) -> str:
    return decoded(filename, data, charset)


def html_text(filename: str, data: bytes, charset: str | None) -> str:
    from bs4 import BeautifulSoup

    markup = decoded(filename, data, charset)
    try:
        soup = BeautifulSoup(markup, "html.parser")
        for hidden in soup(HIDDEN_HTML):
            hidden.decompose()
        for block in soup(HTML_BLOCKS):  # words of inline elements stay together, blocks become lines
            block.append("\n")
        lines = (" ".join(line.split()) for line in soup.get_text().split("\n"))
    except Exception as error:  # noqa: BLE001 - html.parser rejects some markup with assorted exceptions
        raise DocumentError(f"{filename} is not HTML that can be read: {error}", 422) from None
    return "\n".join(line for line in lines if line)


def pdf_text(filename: str, data: bytes, charset: str | None) -> str:
    from pypdf import PdfReader

    if b"%PDF-" not in data[:1024]:
        raise DocumentError(f"{filename} is not a PDF (no %PDF- header)", 422)
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a damaged file's every repair would be a warning
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{filename} is an encrypted PDF", 422)
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except Exception as error:  # noqa: BLE001 - pypdf raises many kinds of exception for damaged files
        raise DocumentError(f"{filename} is a malformed PDF: {type(error).__name__}: {error}", 422) from None
    return "\n\n".join(page.strip() for page in pages if page.strip())


def json_text(filename: str, data: bytes, charset: str | None) -> str:
    try:
        document = json.loads(decoded(filename, data, charset))
    except (ValueError, RecursionError) as error:
        if isinstance(error, DocumentError):
            raise
        raise DocumentError(f"{filename} is not valid JSON: {error}", 422) from None
    lines: list[str] = []
    stack: list[tuple[str, object]] = [("", document)]
    while stack:  # iterative: a deeply nested document must not overflow the stack
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}" if path else str(key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((path, item) for item in reversed(value))
        elif value is not None:
            lines.append(f"{path}: {value}" if path else str(value))
    return "\n".join(lines)


def csv_text(filename: str, data: bytes, charset: str | None) -> str:
    try:
        rows = list(csv.reader(io.StringIO(decoded(filename, data, charset), newline="")))
    except csv.Error as error:
        raise DocumentError(f"{filename} is not valid CSV: {error}", 422) from None
    if len(rows) < 2:
        return "\n".join(", ".join(row) for row in rows)
    header, *body = rows
    return "\n".join("; ".join(f"{column}: {value}" for column, value in zip(header, row, strict=False) if value)
                     for row in body)


PARSERS = {"text": plain_text, "markdown": plain_text, "html": html_text, "pdf": pdf_text, "json": json_text,
           "csv": csv_text}


def chunk(text: str, size: int = 1500, overlap: int = 100) -> list[str]:
    """`text` in pieces of at most `size` characters, consecutive ones sharing about `overlap`; none empty.

    Cut at paragraphs, else lines, else sentences, else words, else characters.
    ValueError unless 1 <= size and 0 <= overlap < size.
    """
    chunks = (text[start:end].strip() for start, end in chunk_spans(text, size, overlap))
    return [piece for piece in chunks if piece]


def chunk_spans(text: str, size: int = 1500, overlap: int = 100) -> list[tuple[int, int]]:
    """Where `chunk`'s pieces are in `text`, as (start, end) before their whitespace is stripped."""
    if size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {size}")
    if overlap < 0 or overlap >= size:
        raise ValueError(f"chunk_overlap must be at least 0 and less than chunk_size ({size}), not {overlap}")
    # Cuts of last resort are no longer than the overlap, so that whole ones can be shared between chunks.
    step = max(1, min(overlap, size - overlap)) if overlap else size
    pieces = split(text, 0, len(text), size, step, 0) if text else []
    spans: list[tuple[int, int]] = []
    current: deque[tuple[int, int]] = deque()
    total = 0
    for start, end in pieces:
        length = end - start
        if current and total + length > size:
            spans.append((current[0][0], current[-1][1]))
            while current and (total > overlap or total + length > size):
                first_start, first_end = current.popleft()
                total -= first_end - first_start
        current.append((start, end))
        total += length
    if current:
        spans.append((current[0][0], current[-1][1]))
    return spans


def split(text: str, start: int, end: int, size: int, step: int, level: int) -> list[tuple[int, int]]:
    """text[start:end] as consecutive spans of at most `size` characters, each separator kept with its left side."""
    if end - start <= size:
        return [(start, end)]
    for depth in range(level, len(SEPARATORS)):
        separator = SEPARATORS[depth]
        if text.find(separator, start, end) < 0:
            continue
        spans: list[tuple[int, int]] = []
        position = start
        while position < end:
            found = text.find(separator, position, end)
            cut = end if found < 0 else found + len(separator)
            spans.extend(split(text, position, cut, size, step, depth + 1))
            position = cut
        return spans
    return [(position, min(position + step, end)) for position in range(start, end, step)]
