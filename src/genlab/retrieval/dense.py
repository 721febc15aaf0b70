"""The dense encoder: a bag of hashed word and character-trigram embeddings, IDF-weighted, summed and
L2-normalised, trained contrastively on the corpus itself.

Why this design: the index is built on one CPU core in seconds to minutes from nothing but the user's
documents (no pretrained weights, no network). A transformer would need far more text and time than a corpus of
a few hundred documents offers; a bag of hashed features trains in a few thousand cheap steps, embeds thousands
of chunks per second, and its trigrams let "installing" meet "install" and survive typos where BM25's exact
words cannot. Training pairs come from the text alone, so no questions are needed: a sentence and the rest of
its chunk (the inverse cloze task of Lee et al., 2019, which resembles a question and its answer passage), and a
chunk and the next chunk of the same document; the other pairs of a batch are the negatives (InfoNCE).
IDF weights (from the corpus at training time, then frozen with the encoder) keep frequent words from
dominating the mean. One thread and a seed make training deterministic; a wall-clock cap bounds it, and the
manifest records whether the cap cut training short (then the step count, not the seed, decides the result).
"""

from __future__ import annotations

import math
import re
import time
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from genlab.retrieval.lexical import words

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class EncoderConfig:
    buckets: int = 65536  # hashed feature rows: words and trigrams share them
    dim: int = 64
    epochs: int = 10  # passes over the training pairs, capped by max_steps and max_seconds
    max_steps: int = 3000
    max_seconds: float = 300.0
    batch_size: int = 64
    lr: float = 0.01
    temperature: float = 0.05
    seed: int = 0


class HashedBagEncoder(torch.nn.Module):
    def __init__(self, config: EncoderConfig, idf: dict[str, float], default_idf: float):
        super().__init__()
        self.config = config
        self.idf, self.default_idf = idf, default_idf  # words unseen at training time count as the rarest
        self.table = torch.nn.EmbeddingBag(config.buckets, config.dim, mode="sum", sparse=True)
        with torch.no_grad():
            self.table.weight.normal_(0.0, 1.0 / math.sqrt(config.dim),
                                      generator=torch.Generator().manual_seed(config.seed))
        self._cache: dict[str, tuple[list[int], list[float]]] = {}

    def _word(self, word: str) -> tuple[list[int], list[float]]:
        """Bucket ids and weights of one word: the word itself with its IDF, its trigrams sharing another."""
        found = self._cache.get(word)
        if found is None:
            b, padded = self.config.buckets, f"<{word}>"
            trigrams = [padded[i:i + 3] for i in range(len(padded) - 2)]
            idf = self.idf.get(word, self.default_idf)
            found = ([zlib.crc32(b"w" + word.encode()) % b] + [zlib.crc32(b"t" + t.encode()) % b for t in trigrams],
                     [idf] + [idf / len(trigrams)] * len(trigrams))
            self._cache[word] = found
        return found

    def bags(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, weights, offsets = [], [], []
        for text in texts:
            offsets.append(len(ids))
            for word in words(text):
                i, w = self._word(word)
                ids += i
                weights += w
        return (torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long),
                torch.tensor(weights, dtype=torch.float32))

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids, offsets, weights = self.bags(texts)
        return F.normalize(self.table(ids, offsets, per_sample_weights=weights), dim=1)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 512, progress: bool = False) -> np.ndarray:
        """Unit vectors (float32, one row per text; an all-zero row for a text without words)."""
        out = np.zeros((len(texts), self.config.dim), np.float32)
        with _one_thread():
            for a in tqdm(range(0, len(texts), batch_size), desc="embedding chunks", unit="batch",
                          disable=not progress, leave=False):
                out[a:a + batch_size] = self(texts[a:a + batch_size]).numpy()
        return out

    # -- storage: tensors in safetensors, the rest in JSON ------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        words_sorted = sorted(self.idf)
        return ({"table": self.table.weight.detach().clone(),
                 "idf": torch.tensor([self.idf[w] for w in words_sorted], dtype=torch.float64)},
                {"config": asdict(self.config), "default_idf": self.default_idf, "words": words_sorted})

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict) -> HashedBagEncoder:
        idf = dict(zip(meta["words"], tensors["idf"].tolist(), strict=True))
        encoder = cls(EncoderConfig(**meta["config"]), idf, float(meta["default_idf"]))
        with torch.no_grad():
            encoder.table.weight.copy_(tensors["table"])
        return encoder


class _one_thread:
    """Training and encoding on one thread: the work is small, and a fixed order of sums keeps it deterministic."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def corpus_idf(texts: list[str]) -> tuple[dict[str, float], float]:
    """Smoothed IDF of each word over the chunks, and the value for unseen words."""
    df: dict[str, int] = {}
    for text in texts:
        for word in set(words(text)):
            df[word] = df.get(word, 0) + 1
    n = len(texts)
    return {w: math.log(1 + n / c) for w, c in df.items()}, math.log(1 + n)


def training_pairs(chunks: list[tuple[str, str]], rng: np.random.Generator) -> list[tuple[str, str]]:
    """Pairs that should embed close, from (document id, chunk text) in document order: a sentence and the
    rest of its chunk (or, for a one-sentence chunk, its first and second half), and neighbouring chunks."""
    pairs = []
    for i, (doc, text) in enumerate(chunks):
        sentences = [s for s in SENTENCE_END.split(text) if s.strip()]
        if len(sentences) >= 2:
            j = int(rng.integers(len(sentences)))
            pairs.append((sentences[j], " ".join(sentences[:j] + sentences[j + 1:])))
        else:
            tokens = text.split()
            if len(tokens) >= 4:
                cut = int(rng.integers(2, len(tokens) - 1))
                pairs.append((" ".join(tokens[:cut]), " ".join(tokens[cut:])))
        if i + 1 < len(chunks) and chunks[i + 1][0] == doc:
            pairs.append((text, chunks[i + 1][1]))
    return pairs


def train_encoder(chunks: list[tuple[str, str]], config: EncoderConfig | None = None,
                  progress: bool = False) -> tuple[HashedBagEncoder, dict]:
    """Train on pairs drawn afresh each epoch from the corpus; returns the encoder and a summary (steps, loss,
    seconds, whether the time cap stopped it)."""
    config = config or EncoderConfig()
    texts = [t for _, t in chunks]
    idf, default_idf = corpus_idf(texts)
    encoder = HashedBagEncoder(config, idf, default_idf)
    rng = np.random.default_rng(config.seed)
    n_pairs = len(training_pairs(chunks, np.random.default_rng(config.seed)))
    per_epoch = n_pairs // config.batch_size if n_pairs >= 2 * config.batch_size else (1 if n_pairs >= 2 else 0)
    total = min(config.max_steps, config.epochs * per_epoch)
    summary = {"pairs_per_epoch": n_pairs, "planned_steps": total, "steps": 0, "first_loss": None,
               "last_loss": None, "stopped_by_time": False}
    if total == 0:
        return encoder, {**summary, "seconds": 0.0}
    optimizer = torch.optim.SparseAdam(encoder.parameters(), lr=config.lr)
    t0, step, losses = time.perf_counter(), 0, []
    with _one_thread(), tqdm(total=total, desc="training dense encoder", unit="step", disable=not progress,
                             leave=False) as bar:
        while step < total:
            pairs = training_pairs(chunks, rng)
            order = rng.permutation(len(pairs))
            size = min(config.batch_size, len(pairs))
            for a in range(0, len(pairs) - size + 1, size):
                batch = [pairs[k] for k in order[a:a + size]]
                q = encoder([p[0] for p in batch])
                d = encoder([p[1] for p in batch])
                logits = q @ d.T / config.temperature
                target = torch.arange(len(batch))
                loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                step += 1
                bar.update(1)
                if step >= total:
                    break
                if time.perf_counter() - t0 > config.max_seconds:
                    summary["stopped_by_time"] = True
                    total = step
                    break
    window = max(1, min(50, len(losses) // 5))
    summary.update(steps=step, first_loss=round(float(np.mean(losses[:window])), 4),
                   last_loss=round(float(np.mean(losses[-window:])), 4),
                   seconds=round(time.perf_counter() - t0, 2))
    return encoder, summary
