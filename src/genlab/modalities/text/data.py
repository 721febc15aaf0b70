"""Text corpora: plain .txt, JSONL (a `text` field per line) and Debian fortune files, split by document.

Exact-duplicate documents are reported and always land in the same split, so a duplicate can never leak
from training into validation or test.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.core.spec import DataSpec
from genlab.core.textfiles import jsonl_records, read_text_file
from genlab.core.versions import version_summary
from genlab.metrics.text import cjk_fraction

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TEXT_FORMATS = ("txt", "jsonl", "fortune")


@dataclass
class TextCorpus:
    documents: list[str]
    splits: dict[str, np.ndarray]  # document indices of train / val / test
    fingerprint: str  # content hash of the documents, in order
    duplicate_groups: list[list[int]]  # indices of identical documents, groups of 2 or more
    source: str
    version: dict | None = None  # a genlab corpus version: its manifest's summary (recorded by runs)

    def split_documents(self, split: str) -> list[str]:
        return [self.documents[i] for i in self.splits[split]]

    def describe(self) -> dict:
        lengths = np.array([len(d) for d in self.documents])
        chars = "".join(self.documents)
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "documents": len(self.documents),
            "characters": int(lengths.sum()),
            "distinct_characters": len(set(chars)),
            "cjk_fraction": round(cjk_fraction(self.documents), 4),
            "document_length": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                                "max": int(lengths.max())},
            "split_documents": {k: int(len(v)) for k, v in self.splits.items()},
            "exact_duplicates": {"groups": len(self.duplicate_groups),
                                 "extra_copies": sum(len(g) - 1 for g in self.duplicate_groups),
                                 "first_groups": self.duplicate_groups[:10]},
            **({"version": self.version} if self.version else {}),
        }


def read_documents(path: str | Path, fmt: str, separator: str | None = None) -> list[str]:
    """Documents from `path`: a .txt file (split on `separator`, else one document), a folder of .txt files
    (one document each), a JSONL file, or a fortune file (records between lines holding only '%')."""
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"data path not found: {path}")
    if fmt not in TEXT_FORMATS:
        raise GenlabError(f"unknown text format {fmt!r}; choose one of: {', '.join(TEXT_FORMATS)}")
    if path.is_dir():
        if fmt != "txt":
            raise GenlabError(f"{path} is a folder; a folder is read as one .txt document per file")
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise GenlabError(f"no .txt files under {path}")
        docs = [read_text_file(p) for p in files]
    else:
        text = read_text_file(path)
        if fmt == "jsonl":
            docs = _jsonl_documents(text, path)
        elif fmt == "fortune":
            docs = [ANSI_ESCAPE.sub("", d).strip("\n") for d in re.split(r"(?m)^%\s*$", text)]
        else:
            docs = text.split(separator) if separator else [text]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise GenlabError(f"{path} holds no non-empty documents")
    return docs


def jsonl_texts(text: str):
    """(line number, the record's `text`, or None with why it has none) for each non-blank line of a JSONL
    file: the training loader stops at a bad line, the audit lists it."""
    for number, record, problem in jsonl_records(text):
        if problem:
            yield number, None, problem
        elif not isinstance(record, dict) or not isinstance(record.get("text"), str):
            yield number, None, "has no string field 'text'"
        else:
            yield number, record["text"], None


def _jsonl_documents(text: str, path: Path) -> list[str]:
    docs = []
    for number, doc, problem in jsonl_texts(text):
        if doc is None:
            raise GenlabError(f"{path} line {number} {problem}")
        docs.append(doc)
    return docs


def split_corpus(documents: list[str], val_fraction: float, test_fraction: float, seed: int,
                 ordered: bool = False, source: str = "") -> TextCorpus:
    """Seeded split by document (`ordered`: first documents train, then val, then test). A corpus of one
    document (e.g. Tiny Shakespeare) is cut into three contiguous pieces instead."""
    if len(documents) == 1:
        text = documents[0]
        a = int(len(text) * (1 - val_fraction - test_fraction))
        b = int(len(text) * (1 - test_fraction))
        pieces = {"train": text[:a], "val": text[a:b], "test": text[b:]}
        splits = {k: np.array([i], dtype=np.int64) if v else np.zeros(0, np.int64)
                  for i, (k, v) in enumerate(pieces.items())}
        fingerprint = hashlib.sha256(hashlib.sha256(text.encode()).digest()).hexdigest()[:16]
        return TextCorpus(list(pieces.values()), splits, fingerprint, [], source)
    digest = hashlib.sha256()
    groups: dict[str, list[int]] = {}
    for i, doc in enumerate(documents):
        h = hashlib.sha256(doc.encode()).digest()
        digest.update(h)
        groups.setdefault(h.hex(), []).append(i)
    unique = list(groups.values())  # in order of first appearance
    order = np.arange(len(unique)) if ordered else np.random.default_rng(seed).permutation(len(unique))
    n = len(unique)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if n - n_val - n_test < 1:
        raise GenlabError(f"{n} distinct documents are too few for val_fraction={val_fraction} and "
                          f"test_fraction={test_fraction}")
    parts = {"train": order[: n - n_val - n_test], "val": order[n - n_val - n_test: n - n_test],
             "test": order[n - n_test:]}
    splits = {k: np.array(sorted(i for g in v for i in unique[g]), dtype=np.int64) for k, v in parts.items()}
    return TextCorpus(documents, splits, digest.hexdigest()[:16], [g for g in unique if len(g) > 1], source)


SPLITS = ("train", "val", "test")


def stored_splits(path: str | Path) -> tuple[list[str], list[str]] | None:
    """(documents, split names) when every record of a JSONL file has a `split` field (train / val / test),
    as the corpus versions `genlab data clean` writes; None when none has one."""
    path = Path(path)
    if not path.is_file():
        return None
    read_documents(path, "jsonl")  # one clear error for a malformed file
    records = [json.loads(line) for line in read_text_file(path).splitlines() if line.strip()]
    records = [r for r in records if r["text"].strip()]
    marked = sum("split" in r for r in records)
    if marked == 0:
        return None
    if marked != len(records) or any(r["split"] not in SPLITS for r in records):
        raise GenlabError(f"{path}: some records have a 'split' field and some do not, or one is not "
                          f"{'/'.join(SPLITS)}; give every record one or none")
    return [r["text"] for r in records], [r["split"] for r in records]


def corpus_from_splits(documents: list[str], names: list[str], source: str = "") -> TextCorpus:
    """A corpus whose split of each document is given (a version keeps its parent's test set); the splits
    are part of its fingerprint."""
    digest = hashlib.sha256()
    groups: dict[str, list[int]] = {}
    for i, doc in enumerate(documents):
        h = hashlib.sha256(doc.encode()).digest()
        digest.update(h + names[i].encode())
        groups.setdefault(h.hex(), []).append(i)
    labels = np.array(names)
    splits = {k: np.flatnonzero(labels == k).astype(np.int64) for k in SPLITS}
    if not len(splits["train"]):
        raise GenlabError(f"{source}: no record has split 'train'")
    return TextCorpus(documents, splits, digest.hexdigest()[:16], [g for g in groups.values() if len(g) > 1], source)


class TokenStream:
    """Endless batches of random windows of block_size + 1 tokens from one split, reproducible from
    (seed, number of batches drawn) alone, which is what a checkpoint stores.

    With `noise` > 0 each input token is replaced, with that probability, by a draw from the split's unigram
    distribution while the targets stay clean: "unigram noising" (Xie et al. 2017, Data Noising as
    Smoothing in Neural Network Language Models), a regulariser for small corpora."""

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, seed: int, noise: float = 0.0,
                 vocab_size: int | None = None):
        if tokens.numel() < block_size + 2:
            raise GenlabError(f"the training split has {tokens.numel()} tokens, fewer than data.block_size + 2 "
                              f"({block_size + 2}); lower data.block_size")
        self.tokens, self.block_size, self.batch_size, self.seed = tokens, block_size, batch_size, seed
        self.drawn = 0
        self._offsets = torch.arange(block_size + 1)
        self.noise = noise
        if noise:
            self._unigram = torch.bincount(tokens, minlength=vocab_size or int(tokens.max()) + 1).double()

    def next(self, noise: torch.Generator | None = None) -> Batch:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.drawn)
        starts = torch.randint(self.tokens.numel() - self.block_size - 1, (self.batch_size,), generator=gen)
        self.drawn += 1
        windows = self.tokens[starts[:, None] + self._offsets]
        if not self.noise:
            return Batch(windows, None)
        context = windows[:, :-1].clone()
        hit = torch.rand(context.shape, generator=gen) < self.noise
        context[hit] = torch.multinomial(self._unigram, int(hit.sum()), replacement=True, generator=gen)
        return Batch(windows, None, context)

    def state(self) -> dict[str, int]:
        return {"drawn": self.drawn}

    def load_state(self, state: dict[str, int]) -> None:
        self.drawn = int(state["drawn"])


@dataclass
class TextDataset:
    corpus: TextCorpus
    tokenizer: object
    tokens: dict[str, torch.Tensor]  # int64 token stream per split, documents separated by EOT
    block_size: int
    token_noise: float = 0.0  # training inputs only; see TokenStream
    modality = "text"

    @property
    def fingerprint(self) -> str:
        return self.corpus.fingerprint

    def spec(self) -> DataSpec:
        return DataSpec(vocab_size=self.tokenizer.vocab_size, block_size=self.block_size)

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False) -> TokenStream:
        return TokenStream(self.tokens["train"], self.block_size, batch_size, seed, self.token_noise,
                           self.tokenizer.vocab_size)

    def validation_batches(self, batch_size: int, binarize_seed: int | None = None):
        """Every val token predicted once: consecutive windows of block_size + 1 overlapping by one token."""
        return self.batches("val", batch_size)

    def batches(self, split: str, batch_size: int, binarize_seed: int | None = None, limit: int | None = None):
        """Fixed-order windows over a split's tokens, each token predicted once (`limit`: first windows only)."""
        windows = token_windows(self.tokens[split], self.block_size, batch_size)
        return windows if limit is None else itertools.islice(windows, math.ceil(limit / batch_size))

    def likelihood_split(self) -> str:
        """The split test likelihood scores: test, or val when there is no test split."""
        return "test" if self.tokens["test"].numel() > 1 else "val"

    def characters(self, split: str) -> int:
        return sum(len(d) for d in self.corpus.split_documents(split))

    def describe(self) -> dict:
        return {**self.corpus.describe(), "tokenizer": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
                "block_size": self.block_size, "split_tokens": {k: int(v.numel()) for k, v in self.tokens.items()}}

    def save_artifacts(self, folder: Path) -> None:
        self.tokenizer.save(folder)


def token_windows(tokens: torch.Tensor, block_size: int, batch_size: int):
    """Consecutive windows of block_size + 1 tokens overlapping by one, so every token after the first is
    predicted exactly once: batches of full windows, then the shorter remainder on its own."""
    full = max(0, tokens.numel() - 1) // block_size
    if full:
        windows = tokens[: full * block_size + 1].unfold(0, block_size + 1, block_size)
        for i in range(0, full, batch_size):
            yield Batch(windows[i: i + batch_size], None)
    rest = tokens[full * block_size:]
    if rest.numel() >= 2:
        yield Batch(rest[None], None)


def load_text_dataset(cfg, tokenizer_dir: Path | None = None) -> TextDataset:
    """Read, split and tokenize the corpus of `cfg` (a DataConfig); reuse the run's saved tokenizer if any."""
    from genlab.modalities.text.tokenizers import encode_documents, load_tokenizer, train_tokenizer

    if cfg.path is None:
        raise GenlabError(f"data.source={cfg.source} needs data.path (a file or folder)")
    paths = cfg.path if isinstance(cfg.path, list) else [cfg.path]
    stored = stored_splits(paths[0]) if cfg.source == "jsonl" and len(paths) == 1 else None
    if stored is not None:  # a genlab text version: its splits travel with it
        if cfg.limit is not None:
            raise GenlabError("data.limit does not apply to a corpus version with its own splits")
        corpus = corpus_from_splits(*stored, source=str(paths[0]))
        corpus.version = version_summary(Path(paths[0]))
    else:
        docs = [doc for path in paths for doc in read_documents(path, cfg.source, cfg.separator)]
        if cfg.limit is not None:
            docs = docs[: cfg.limit]
        corpus = split_corpus(docs, cfg.val_fraction, cfg.test_fraction, cfg.split_seed,
                              source=", ".join(map(str, paths)))
    if tokenizer_dir is not None and (Path(tokenizer_dir) / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(tokenizer_dir)
    elif cfg.tokenizer == "pretrained":
        raise GenlabError("data.tokenizer=pretrained takes the tokenizer of the model fine-tuned (genlab finetune "
                          f"BASE ...), but {tokenizer_dir or 'no base'} holds no tokenizer.json")
    elif cfg.tokenizer == "char":
        extra = [doc for path in cfg.vocab_from for doc in read_documents(path, cfg.source, cfg.separator)]
        tokenizer = train_tokenizer("char", corpus.documents + extra)
    else:
        tokenizer = train_tokenizer(cfg.tokenizer, corpus.split_documents("train"), cfg.vocab_size)
    tokens = {k: torch.from_numpy(encode_documents(tokenizer, corpus.split_documents(k)).astype(np.int64))
              for k in corpus.splits}
    return TextDataset(corpus, tokenizer, tokens, cfg.block_size, cfg.token_noise)
