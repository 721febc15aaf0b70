"""Passages small enough to rank and quote: paragraphs packed up to a budget of whitespace tokens; a paragraph
longer than the budget is cut into windows that overlap, so a sentence across a cut is whole in one of them.
Every chunk keeps its document's id and its character span, so `document.text[start:end] == chunk.text`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from genlab.core.errors import GenlabError

TOKEN = re.compile(r"\S+")
PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class Chunk:
    id: int  # position in the index
    doc_id: str
    start: int  # character span in the document
    end: int
    text: str


def chunk_document(doc_id: str, text: str, budget: int = 200, overlap: int = 40, first_id: int = 0) -> list[Chunk]:
    """Chunks of one document. Paragraph breaks (a blank line) are preferred cut points: no overlap is added
    there, since a new paragraph is where the text itself changes subject. Inside a paragraph longer than the
    budget, consecutive windows share `overlap` tokens."""
    if budget < 1 or not 0 <= overlap < budget:
        raise GenlabError(f"chunk budget must be >= 1 and 0 <= overlap < budget (got {budget}, {overlap})")
    spans = [m.span() for m in TOKEN.finditer(text)]
    if not spans:
        return []
    # token i starts a paragraph when a blank line lies between token i-1 and token i
    starts_paragraph = [False] + [_break_between(text, spans[i - 1][1], spans[i][0]) for i in range(1, len(spans))]
    chunks, s, n = [], 0, len(spans)
    while s < n:
        e = min(s + budget, n)
        cut_at_paragraph = e == n
        if e < n:
            boundary = next((j for j in range(e, s, -1) if starts_paragraph[j]), None)
            if boundary is not None:
                e, cut_at_paragraph = boundary, True
        start, end = spans[s][0], spans[e - 1][1]
        chunks.append(Chunk(first_id + len(chunks), doc_id, start, end, text[start:end]))
        if e == n:
            break
        s = e if cut_at_paragraph else e - overlap
    return chunks


def _break_between(text: str, a: int, b: int) -> bool:
    """A blank line in the whitespace between two tokens."""
    return text.count("\n", a, b) >= 2 and PARAGRAPH_BREAK.search(text[a:b]) is not None
