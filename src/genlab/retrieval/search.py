"""The index a chat layer talks to: build it from documents, add more, save and load it, and search it by BM25,
by the dense encoder, or by both fused with reciprocal-rank fusion (RRF, k=60: a rank-only fusion, so BM25's
unbounded scores and cosine similarities need no calibration against each other)."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genlab.core.errors import GenlabError
from genlab.core.progress import bars_off, quiet, timed
from genlab.retrieval.chunking import Chunk, chunk_document
from genlab.retrieval.dense import EncoderConfig, HashedBagEncoder, train_encoder
from genlab.retrieval.documents import Document, check_unique_ids
from genlab.retrieval.lexical import LexicalIndex
from genlab.retrieval.storage import StoredIndex, save_folder

METHODS = ("bm25", "dense", "hybrid")


@dataclass
class IndexSettings:
    budget: int = 200  # whitespace tokens per chunk
    overlap: int = 40  # tokens shared by consecutive windows of one long paragraph
    k1: float = 1.5  # BM25
    b: float = 0.75
    rrf_k: int = 60
    fusion_depth: int = 100  # how many chunks of each ranking enter the fusion (at least k)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    @classmethod
    def from_dict(cls, d: dict) -> IndexSettings:
        return cls(**{**d, "encoder": EncoderConfig(**d["encoder"])})


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    doc_id: str
    source: str
    title: str
    text: str
    score: float  # BM25 score, cosine similarity or RRF score, by method
    span: tuple[int, int]  # characters [start, end) of the document: what to quote and cite


def _peak_memory_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _top(scores: np.ndarray, k: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k best scores, best first, ties by lower chunk id (deterministic)."""
    candidates = np.flatnonzero(keep) if keep is not None else np.arange(len(scores))
    if len(candidates) > k:
        part = np.argpartition(-scores[candidates], k - 1)[:k]
        cutoff = scores[candidates[part]].min()
        candidates = candidates[scores[candidates] >= cutoff]  # keep every tie at the cut, then order them
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


class Index:
    def __init__(self, settings: IndexSettings, documents: list[dict], chunks: list[Chunk], lexical: LexicalIndex,
                 encoder: HashedBagEncoder, embeddings: np.ndarray, info: dict):
        self.settings, self.documents, self.chunks = settings, documents, chunks
        self.lexical, self.encoder, self.embeddings, self.info = lexical, encoder, embeddings, info
        self._doc_by_id = {d["id"]: d for d in documents}

    # -- building -------------------------------------------------------------------------------------------------
    @staticmethod
    def _chunk(documents: list[Document], settings: IndexSettings, first_id: int, progress: bool):
        chunks = []
        for doc in tqdm(documents, desc="chunking", unit="doc", disable=not progress, leave=False):
            chunks += chunk_document(doc.id, doc.text, settings.budget, settings.overlap, first_id + len(chunks))
        return chunks

    @classmethod
    def build(cls, documents: list[Document], settings: IndexSettings | None = None,
              encoder: HashedBagEncoder | None = None) -> Index:
        """Chunk, index with BM25, train the dense encoder (unless one is given) and embed every chunk. Timings
        and peak memory go to `index.info` (and the manifest)."""
        settings = settings or IndexSettings()
        if not documents:
            raise GenlabError("no documents to index")
        check_unique_ids(documents)
        silent = quiet()
        bars = not bars_off(silent)
        timings: dict = {}
        t0 = time.perf_counter()
        with timed(timings, "chunking", silent):
            chunks = cls._chunk(documents, settings, 0, bars)
        if not chunks:
            raise GenlabError("the documents hold no text to index")
        with timed(timings, "bm25", silent):
            lexical = LexicalIndex(settings.k1, settings.b)
            lexical.add([c.text for c in chunks])
        training = {"reused": True}
        if encoder is None:
            with timed(timings, "dense encoder training", silent):
                encoder, training = train_encoder([(c.doc_id, c.text) for c in chunks], settings.encoder, bars)
        with timed(timings, "embedding chunks", silent):
            embeddings = encoder.encode([c.text for c in chunks], progress=bars)
        info = {"build": {"seconds": round(time.perf_counter() - t0, 2), "steps": timings,
                          "peak_memory_mib": _peak_memory_mib(), "encoder_training": training,
                          "documents": len(documents), "chunks": len(chunks)},
                "adds": []}
        docs = [{"id": d.id, "source": d.source, "title": d.title, "chars": len(d.text)} for d in documents]
        return cls(settings, docs, chunks, lexical, encoder, embeddings, info)

    def add(self, documents: list[Document]) -> dict:
        """Index more documents without rebuilding: their chunks are tokenised and embedded with the kept
        encoder; the BM25 statistics are recomputed from the stored token ids. Returns what was added."""
        check_unique_ids(documents, set(self._doc_by_id))
        t0 = time.perf_counter()
        bars = not bars_off(quiet())
        chunks = self._chunk(documents, self.settings, len(self.chunks), bars)
        self.lexical.add([c.text for c in chunks])
        self.embeddings = np.concatenate([self.embeddings, self.encoder.encode([c.text for c in chunks],
                                                                               progress=bars)])
        self.chunks += chunks
        docs = [{"id": d.id, "source": d.source, "title": d.title, "chars": len(d.text)} for d in documents]
        self.documents += docs
        self._doc_by_id.update({d["id"]: d for d in docs})
        added = {"documents": len(documents), "chunks": len(chunks), "seconds": round(time.perf_counter() - t0, 2),
                 "peak_memory_mib": _peak_memory_mib()}
        self.info["adds"].append(added)
        return added

    # -- searching ------------------------------------------------------------------------------------------------
    def rank(self, query: str, k: int, method: str = "hybrid") -> list[tuple[int, float]]:
        """(chunk id, score) of the k best chunks, best first. An empty query or k=0 finds nothing; BM25 returns
        only chunks sharing a word with the query, so it can return fewer than k."""
        if method not in METHODS:
            raise GenlabError(f"unknown search method {method!r}; choose one of: {', '.join(METHODS)}")
        if not isinstance(query, str):
            raise GenlabError(f"a query is text, not {type(query).__name__}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise GenlabError(f"k must be a whole number >= 0 (got {k!r})")
        if k == 0 or not query.strip() or not self.chunks:
            return []
        if method == "bm25":
            scores = self.lexical.scores(query)
            return [(int(i), float(scores[i])) for i in _top(scores, k, scores > 0)]
        if method == "dense":
            q = self.encoder.encode([query])[0]
            if not q.any():  # no word at all (punctuation only): nothing to compare
                return []
            scores = self.embeddings @ q
            return [(int(i), float(scores[i])) for i in _top(scores, k)]
        depth = max(k, self.settings.fusion_depth)
        fused: dict[int, float] = {}
        for ranking in (self.rank(query, depth, "bm25"), self.rank(query, depth, "dense")):
            for rank, (i, _) in enumerate(ranking, 1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (self.settings.rrf_k + rank)
        return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]

    def search(self, query: str, k: int = 5, method: str = "hybrid") -> list[Hit]:
        """The k best passages for a query, with the document each came from and its character span there."""
        hits = []
        for i, score in self.rank(query, k, method):
            c = self.chunks[i]
            doc = self._doc_by_id[c.doc_id]
            hits.append(Hit(c.id, c.doc_id, doc["source"], doc["title"], c.text, score, (c.start, c.end)))
        return hits

    def document(self, doc_id: str) -> dict:
        """A document's id, source, title and length in characters."""
        if doc_id not in self._doc_by_id:
            raise GenlabError(f"no document {doc_id!r} in this index")
        return self._doc_by_id[doc_id]

    # -- storage --------------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> dict:
        """Write the index folder; returns the manifest (with its size on disk in bytes)."""
        tensors, encoder_meta = self.encoder.state()
        files = {
            "documents.json": self.documents,
            "chunks.json": {"doc": [c.doc_id for c in self.chunks], "start": [c.start for c in self.chunks],
                            "end": [c.end for c in self.chunks], "text": [c.text for c in self.chunks]},
            "bm25.npz": self.lexical.arrays(),
            "vocabulary.json": self.lexical.words_in_order(),
            "encoder.safetensors": tensors,
            "encoder.json": encoder_meta,
            "embeddings.safetensors": {"chunks": torch.from_numpy(self.embeddings)},
        }
        manifest = {"settings": asdict(self.settings), "documents": len(self.documents), "chunks": len(self.chunks),
                    "vocabulary": len(self.lexical.vocab), **self.info}
        manifest["bytes"] = save_folder(Path(folder), files, manifest)
        return manifest

    @classmethod
    def load(cls, folder: str | Path) -> Index:
        """Read an index folder written by `save`; any missing or altered file is a GenlabError naming it."""
        stored = StoredIndex(Path(folder))
        m = stored.manifest
        try:
            settings = IndexSettings.from_dict(m["settings"])
            documents = stored.json("documents.json")
            c = stored.json("chunks.json")
            chunks = [Chunk(i, *row) for i, row in enumerate(zip(c["doc"], c["start"], c["end"], c["text"],
                                                                 strict=True))]
            lexical = LexicalIndex.from_arrays(stored.arrays("bm25.npz"), stored.json("vocabulary.json"),
                                               settings.k1, settings.b)
            encoder = HashedBagEncoder.from_state(stored.tensors("encoder.safetensors"), stored.json("encoder.json"))
            embeddings = stored.tensors("embeddings.safetensors")["chunks"].numpy()
        except (KeyError, TypeError, ValueError) as exc:
            raise GenlabError(f"index {folder} is inconsistent ({type(exc).__name__}: {exc}); rebuild it") from None
        if not (len(chunks) == lexical.size == len(embeddings) == m.get("chunks")):
            raise GenlabError(f"index {folder} is inconsistent: {len(chunks)} chunks, {lexical.size} BM25 rows, "
                              f"{len(embeddings)} embeddings; rebuild it")
        info = {"build": m.get("build", {}), "adds": m.get("adds", [])}
        return cls(settings, documents, chunks, lexical, encoder, embeddings, info)
