"""Answers grounded in a document index: the passages retrieved for the conversation's last user turn become a
system turn at its start, rendered by the run's chat template like any turn. The same function grounds the
training conversations and the served ones, so the model learns to read passages placed exactly where it will
find them. A question no passage matches well enough (BM25 below data.retrieval.min_score) is not answered by
the model at all: the bot says it does not know."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from genlab.core.errors import GenlabError

ABSTAIN = "I don't know: none of the documents I can search answers that."
HEADER = "Answer from these passages:"


@dataclass
class Grounding:
    index: object  # genlab.retrieval.Index
    path: str
    k: int = 2
    method: str = "hybrid"
    passage_chars: int = 600
    min_score: float = 0.0

    @classmethod
    def open(cls, settings, path: str | None = None) -> Grounding:
        """The index of `settings` (data.retrieval), or the one at `path` with those settings."""
        from genlab.retrieval import Index

        folder = path or settings.index
        return cls(Index.load(folder), str(folder), settings.k, settings.method, settings.passage_chars,
                   settings.min_score)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of the index's manifest (which holds every file's checksum) and the grounding settings."""
        manifest = Path(self.path) / "manifest.json"
        digest = hashlib.sha256(manifest.read_bytes())
        digest.update(f"{self.k}|{self.method}|{self.passage_chars}|{self.min_score}".encode())
        return digest.hexdigest()[:16]

    def retrieve(self, messages: list[dict]) -> tuple[list[dict], bool]:
        """(citations of the passages for the last user turn, whether to abstain)."""
        query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        if query is None:
            raise GenlabError("grounding needs a user turn to search for")
        hits = self.index.search(query, self.k, self.method)
        abstain = not hits
        if self.min_score > 0 and not abstain:  # the lexical evidence of the best passage
            best = self.index.rank(query, 1, "bm25")
            abstain = not best or best[0][1] < self.min_score
        citations = [{"id": h.chunk_id, "document": h.doc_id, "source": h.source, "title": h.title,
                      "span": list(h.span), "score": round(float(h.score), 6), "text": h.text[: self.passage_chars]}
                     for h in hits]
        return citations, abstain

    def ground(self, messages: list[dict]) -> tuple[list[dict], list[dict], bool]:
        """(the conversation with the passages as its first system turn, the citations, whether to abstain)."""
        citations, abstain = self.retrieve(messages)
        passages = "\n".join(f"[{i}] {c['text']}" for i, c in enumerate(citations, 1))
        context = f"{HEADER}\n{passages}"
        if messages and messages[0]["role"] == "system":
            grounded = [{"role": "system", "content": f"{messages[0]['content']}\n\n{context}"}, *messages[1:]]
        else:
            grounded = [{"role": "system", "content": context}, *messages]
        return grounded, citations, abstain

    def ground_training(self, messages: list[dict]) -> list[dict]:
        """A training conversation grounded by the user turn its last answer replies to."""
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        grounded, _, _ = self.ground(messages[: last_user + 1])
        return [*grounded, *messages[last_user + 1:]]
