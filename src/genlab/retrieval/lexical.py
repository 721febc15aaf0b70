"""The lexical index: BM25 (bm25s, Lucene variant) over lower-cased word tokens, English stop words removed.

Token ids per chunk are kept alongside bm25s's precomputed score matrix, so adding chunks recomputes the BM25
statistics (document frequencies, average length) from stored ids without re-reading or re-tokenising any
text, and the result equals an index built from scratch over all chunks."""

from __future__ import annotations

import re

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

WORD = re.compile(r"\w+")
STOPWORDS = frozenset(STOPWORDS_EN)


def words(text: str) -> list[str]:
    """The tokens both sides use: lower-cased runs of word characters, stop words dropped."""
    return [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]


class LexicalIndex:
    """BM25 scores for every chunk; vocabulary ids are given in order of first appearance, so adding chunks
    one batch at a time assigns the same ids as indexing them all at once."""

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        self.token_ids = np.zeros(0, np.int32)  # every chunk's token ids, concatenated
        self.offsets = np.zeros(1, np.int64)  # chunk i's ids are token_ids[offsets[i]:offsets[i+1]]
        self.bm25: bm25s.BM25 | None = None

    @property
    def size(self) -> int:
        return len(self.offsets) - 1

    def add(self, texts: list[str]) -> None:
        """Tokenise new chunks, then recompute the score matrix over all stored ids."""
        new_ids, lengths = [], []
        for text in texts:
            ids = [self.vocab.setdefault(w, len(self.vocab)) for w in words(text)]
            new_ids.extend(ids)
            lengths.append(len(ids))
        self.token_ids = np.concatenate([self.token_ids, np.asarray(new_ids, np.int32)])
        self.offsets = np.concatenate([self.offsets, self.offsets[-1] + np.cumsum(lengths, dtype=np.int64)])
        self._score()

    def _score(self) -> None:
        bm25 = bm25s.BM25(k1=self.k1, b=self.b)
        ids = self.token_ids.tolist()
        per_chunk = [ids[a:b] for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(), strict=True)]
        vocab = dict(self.vocab)
        vocab.setdefault("", len(vocab))  # bm25s's id for "no token", so an id exists for every chunk
        bm25.index((per_chunk, vocab), create_empty_token=False, show_progress=False)
        self.bm25 = bm25

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for the query (zeros when no query word is in the vocabulary)."""
        ids = [self.vocab[w] for w in words(query) if w in self.vocab]
        if not ids or self.bm25 is None:
            return np.zeros(self.size, np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids), np.float32)

    # -- storage: plain arrays and a word list, never pickle ---------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        s = self.bm25.scores
        return {"token_ids": self.token_ids, "offsets": self.offsets, "score_data": np.asarray(s["data"]),
                "score_indices": np.asarray(s["indices"]), "score_indptr": np.asarray(s["indptr"])}

    def words_in_order(self) -> list[str]:
        return sorted(self.vocab, key=self.vocab.__getitem__)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], vocab: list[str], k1: float, b: float) -> LexicalIndex:
        index = cls(k1, b)
        index.vocab = {w: i for i, w in enumerate(vocab)}
        index.token_ids, index.offsets = arrays["token_ids"].astype(np.int32), arrays["offsets"].astype(np.int64)
        bm25 = bm25s.BM25(k1=k1, b=b)
        bm25.scores = {"data": arrays["score_data"], "indices": arrays["score_indices"],
                       "indptr": arrays["score_indptr"], "num_docs": index.size}
        bm25.vocab_dict = {**index.vocab, "": len(index.vocab)}
        bm25.unique_token_ids_set = set(bm25.vocab_dict.values())
        bm25.nonoccurrence_array = None
        index.bm25 = bm25
        return index
