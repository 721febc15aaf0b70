"""Retrieval over your own documents: chunks with citable spans, a BM25 index, a small dense encoder trained on
the corpus itself, hybrid search by reciprocal-rank fusion, and document-level retrieval metrics.

The API a chat layer needs: `Index.build(documents)` / `Index.load(path)`, `index.search(query, k, method)`
returning `Hit`s (chunk id, document id, source, text, score, character span), `index.add(documents)` and
`index.save(path)`; `read_documents(paths)` turns files into `Document`s.
"""

from genlab.retrieval.chunking import Chunk, chunk_document
from genlab.retrieval.documents import Document, read_documents
from genlab.retrieval.metrics import evaluate_rankings
from genlab.retrieval.search import METHODS, Hit, Index, IndexSettings

__all__ = ["Chunk", "Document", "Hit", "Index", "IndexSettings", "METHODS", "chunk_document", "evaluate_rankings",
           "read_documents"]
