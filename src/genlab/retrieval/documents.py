"""Documents to index, from files: a folder of .txt/.md/.html, JSONL records (`text`, optional `id`, `source`,
`title`) or Debian fortune files. Each document keeps an id and a source so an answer can cite it."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.textfiles import jsonl_records, read_text_file
from genlab.modalities.text.data import read_documents as read_text_documents

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
FORMATS = ("auto", "text", "html", "jsonl", "fortune")


@dataclass(frozen=True)
class Document:
    id: str  # unique in an index: what metrics and citations refer to
    text: str
    source: str = ""  # where it came from (a path, a section name), shown with each hit
    title: str = ""


class _TextOfHTML(HTMLParser):
    """Visible text of a page: script/style dropped, block elements become paragraph breaks (the chunker cuts
    at those), the <title> kept apart."""

    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "pre",
              "section", "article", "blockquote", "dt", "dd", "hr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        paragraphs = (" ".join(p.split()) for p in "".join(self.parts).split("\n\n"))
        return "\n\n".join(p for p in paragraphs if p)


def html_text(html: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page, with the standard library's parser."""
    parser = _TextOfHTML()
    parser.feed(html)
    parser.close()
    return " ".join(parser.title.split()), parser.text()


def _jsonl(path: Path) -> list[Document]:
    docs = []
    for number, record, problem in jsonl_records(read_text_file(path)):
        if problem:
            raise GenlabError(f"{path} line {number} {problem}")
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise GenlabError(f"{path} line {number} has no string field 'text'")
        if record["text"].strip():
            docs.append(Document(str(record.get("id", f"{path.name}:{number}")), record["text"],
                                 str(record.get("source", path.name)), str(record.get("title", ""))))
    return docs


def _looks_like_fortune(path: Path) -> bool:
    """Fortune files have no suffix and separate records by lines holding only '%'."""
    try:
        head = path.read_bytes()[:65536]
    except OSError:
        return False
    return not path.suffix and b"\n%\n" in head


def _file(path: Path, fmt: str, name: str) -> list[Document]:
    suffix = path.suffix.lower()
    kind = fmt if fmt != "auto" else ("jsonl" if suffix == ".jsonl" else "html" if suffix in HTML_SUFFIXES
                                      else "text" if suffix in TEXT_SUFFIXES
                                      else "fortune" if _looks_like_fortune(path) else None)
    if kind is None:
        raise GenlabError(f"{path}: unknown kind of document file; use .txt/.md/.html/.jsonl, a fortune file, "
                          "or say which with --format")
    if kind == "jsonl":
        return _jsonl(path)
    if kind == "fortune":
        return [Document(f"{name}#{i}", text, name) for i, text in enumerate(read_text_documents(path, "fortune"))]
    text = read_text_file(path)
    if kind == "html":
        title, text = html_text(text)
        return [Document(name, text, name, title)] if text.strip() else []
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first.lstrip("#").strip() if suffix in (".md", ".markdown") and first.startswith("#") else ""
    return [Document(name, text, name, title)] if text.strip() else []


def read_documents(paths, fmt: str = "auto") -> list[Document]:
    """Documents from files and folders. A folder is walked in sorted order for .txt/.md/.html/.jsonl files and
    fortune files; ids are paths relative to the folder (plus '#n' per fortune record, ':line' per JSONL record
    without an `id`). Ids must be unique."""
    if fmt not in FORMATS:
        raise GenlabError(f"unknown document format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    docs: list[Document] = []
    for path in map(Path, paths):
        if not path.exists():
            raise GenlabError(f"document path not found: {path}")
        if path.is_dir():
            known = TEXT_SUFFIXES + HTML_SUFFIXES + (".jsonl",)
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                           and (p.suffix.lower() in known or (fmt == "fortune" and not p.suffix)
                                or (fmt == "auto" and _looks_like_fortune(p))))
            if not files:
                raise GenlabError(f"no .txt, .md, .html, .jsonl or fortune files under {path}")
            for file in files:
                docs += _file(file, fmt, file.relative_to(path).as_posix())
        else:
            docs += _file(path, fmt, path.name)
    if not docs:
        raise GenlabError(f"no non-empty documents in {', '.join(map(str, paths))}")
    check_unique_ids(docs)
    return docs


def check_unique_ids(docs: list[Document], existing: set[str] | frozenset = frozenset()) -> None:
    seen = set(existing)
    for doc in docs:
        if doc.id in seen:
            where = "is already in the index" if doc.id in existing else "appears twice"
            raise GenlabError(f"document id {doc.id!r} {where}; document ids must be unique")
        seen.add(doc.id)
