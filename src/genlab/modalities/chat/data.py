"""Chat data: JSONL conversations (`messages` with system / user / assistant turns, or `prompt` / `completion`
pairs), split by conversation, rendered through one chat template and tokenised with a 0/1 weight per target
token, then packed several to a training window (attention and positions restart at each conversation) or padded
one to a row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.core.batch import Batch, EpochCycle
from genlab.core.errors import GenlabError
from genlab.core.spec import DataSpec
from genlab.core.textfiles import jsonl_records, read_text_file
from genlab.modalities.chat.template import GENLAB_TEMPLATE, ChatTemplate, encode_conversation, load_template
from genlab.modalities.text.data import TextCorpus, split_corpus

ROLES = ("system", "user", "assistant")


def conversation_problem(messages) -> str | None:
    """Why `messages` cannot train (unknown role, empty turn, wrong order, no answer), None when it can."""
    if not isinstance(messages, list) or not messages:
        return "has no turns ('messages' must be a non-empty list)"
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"turn {i} needs a string 'role' and a string 'content'"
        if m["role"] not in ROLES:
            return f"turn {i} has unknown role {m['role']!r} (system, user or assistant)"
        if not m["content"].strip():
            return f"turn {i} ({m['role']}) is empty"
    roles = [m["role"] for m in messages]
    body = roles[1:] if roles[0] == "system" else roles
    for i, role in enumerate(body):
        expected = ("user", "assistant")[i % 2]
        if role != expected:
            at = i + 1 + (len(roles) - len(body))
            return (f"wrong order: turn {at} is {role}, expected {expected} (an optional system turn first, then "
                    "user and assistant turns alternating)")
    if "assistant" not in body:
        return "has no assistant turn"
    if body[-1] != "assistant":
        return "ends with a user turn that has no answer"
    return None


PROBLEM_KINDS = (("is not valid JSON", "invalid JSON"), ("unknown role", "unknown role"), ("is empty", "empty turn"),
                 ("wrong order", "wrong order"), ("has no assistant turn", "no assistant turn"),
                 ("ends with a user turn", "unanswered last turn"), ("has no turns", "no turns"),
                 ("needs a string 'role'", "malformed turn"))


def problem_kind(problem: str) -> str:
    """The kind of a reason conversation_problem / chat_records give, for counting bad records by kind (the
    phrases are those above, kept beside them); anything else is not a conversation record at all."""
    return next((kind for phrase, kind in PROBLEM_KINDS if phrase in problem), "not a conversation record")


def as_messages(record) -> tuple[list | None, str | None]:
    """(messages, None) for a `messages` record or a `prompt` / `completion` pair, else (None, why)."""
    if not isinstance(record, dict):
        return None, "is not a JSON object"
    if "messages" in record:
        messages = record["messages"]
    elif "prompt" in record and "completion" in record:
        if not isinstance(record["prompt"], str) or not isinstance(record["completion"], str):
            return None, "needs string 'prompt' and 'completion'"
        messages = [{"role": "user", "content": record["prompt"]},
                    {"role": "assistant", "content": record["completion"]}]
    else:
        return None, "has neither 'messages' nor 'prompt' and 'completion'"
    problem = conversation_problem(messages)
    if problem:
        return None, problem
    return [{"role": m["role"], "content": m["content"]} for m in messages], None


def chat_records(text: str):
    """(line number, messages or None, why not) for each non-blank line of a chat JSONL file."""
    for number, messages, problem, _ in sourced_chat_records(text):
        yield number, messages, problem


def sourced_chat_records(text: str):
    """chat_records with each record's `source` field (a string, else None) as a fourth item."""
    for number, record, problem in jsonl_records(text):
        if problem:
            yield number, None, problem, None
            continue
        messages, problem = as_messages(record)
        source = record.get("source") if isinstance(record, dict) else None
        yield number, messages, problem, source if isinstance(source, str) else None


def read_conversations(path: str | Path) -> list[list[dict]]:
    """Every conversation of a chat JSONL file; the first bad record is one error naming its line."""
    return [messages for messages, _ in read_conversation_records(path)]


def read_conversation_records(path: str | Path) -> list[tuple[list[dict], str | None]]:
    """(messages, the record's `source` field if any) for every conversation of a chat JSONL file: the source
    names the document a reference answer comes from (citation precision of grounded answers)."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"data path not found: {path}" if not path.exists() else f"{path} is a folder; chat "
                          "data is one JSONL file")
    out = []
    for number, messages, problem, source in sourced_chat_records(read_text_file(path)):
        if messages is None:
            raise GenlabError(f"{path} line {number} {problem} (genlab data audit {path} lists every bad record)")
        out.append((messages, source))
    if not out:
        raise GenlabError(f"{path} holds no conversations")
    return out


def conversation_key(messages: list[dict]) -> str:
    return json.dumps(messages, ensure_ascii=False, sort_keys=True)


def split_conversations(conversations: list[list[dict]], cfg, source: str) -> TextCorpus:
    """Seeded split by conversation; identical conversations always share a split (text.data.split_corpus)."""
    if len(conversations) < 2:
        raise GenlabError(f"{source} holds {len(conversations)} conversation; a split needs at least two")
    return split_corpus([conversation_key(c) for c in conversations], cfg.val_fraction, cfg.test_fraction,
                        cfg.split_seed, source=source)


@dataclass
class Encoded:
    """The tokenised conversations of one split, truncated to the window."""

    ids: list[np.ndarray]
    weights: list[np.ndarray]
    truncated: int  # conversations longer than the window, cut at its end

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(i) for i in self.ids], dtype=np.int64)


def encode_split(conversations: list[list[dict]], template: ChatTemplate, tokenizer, train_on: str,
                 window: int) -> Encoded:
    ids, weights, truncated = [], [], 0
    for messages in conversations:
        a, w = encode_conversation(template, tokenizer, messages, train_on)
        if len(a) > window:
            a, w, truncated = a[:window], w[:window], truncated + 1
        ids.append(a)
        weights.append(w)
    return Encoded(ids, weights, truncated)


def pack_rows(lengths: np.ndarray, order: np.ndarray, window: int, packing: bool) -> list[list[int]]:
    """Conversations (indices, taken in `order`) grouped into rows of at most `window` tokens: each into the
    first row with room for it (first fit) when packing, one per row otherwise."""
    if not packing:
        return [[int(i)] for i in order]
    rows: list[list[int]] = []
    room = np.zeros(len(order), dtype=np.int64)  # free tokens of each open row
    for i in order.tolist():
        fits = np.flatnonzero(room[: len(rows)] >= lengths[i])
        if len(fits):
            r = int(fits[0])
        else:
            r = len(rows)
            rows.append([])
            room[r] = window
        rows[r].append(i)
        room[r] -= lengths[i]
    return rows


def row_batch(encoded: Encoded, rows: list[list[int]], pad_id: int) -> Batch:
    """A batch of rows, right-padded to the longest (pads: weight 0, a segment of their own)."""
    width = max(sum(len(encoded.ids[i]) for i in row) for row in rows)
    x = np.full((len(rows), width), pad_id, dtype=np.int64)
    w = np.zeros((len(rows), width), dtype=np.float32)
    seg = np.full((len(rows), width), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for s, i in enumerate(row):
            n = len(encoded.ids[i])
            x[r, at:at + n], w[r, at:at + n], seg[r, at:at + n] = encoded.ids[i], encoded.weights[i], s
            at += n
        seg[r, at:] = len(row)
    packed = any(len(row) > 1 for row in rows)
    return Batch(torch.from_numpy(x), None, mask=torch.from_numpy(w[:, 1:]),
                 segments=torch.from_numpy(seg[:, :-1]) if packed else None)


class ChatStream:
    """Endless training batches of rows, reshuffled and repacked each epoch, reproducible from (seed, epoch,
    position) alone, which is what a checkpoint stores."""

    def __init__(self, encoded: Encoded, window: int, batch_size: int, seed: int, packing: bool, pad_id: int):
        if not encoded.ids:
            raise GenlabError("the training split holds no conversations")
        self.encoded, self.batch_size, self.pad_id = encoded, batch_size, pad_id
        self.rows = EpochCycle(lambda epoch: pack_rows(
            encoded.lengths, np.random.default_rng([seed, epoch]).permutation(len(encoded.ids)), window, packing))

    def next(self, noise: torch.Generator | None = None) -> Batch:
        return row_batch(self.encoded, self.rows.take(self.batch_size), self.pad_id)

    def state(self) -> dict[str, int]:
        return self.rows.state()

    def load_state(self, state: dict[str, int]) -> None:
        self.rows.load_state(state)


@dataclass
class ChatDataset:
    corpus: TextCorpus  # documents are the conversations as canonical JSON
    conversations: list[list[dict]]
    tokenizer: object
    template: ChatTemplate
    encoded: dict[str, Encoded]
    block_size: int
    train_on: str = "assistant"
    packing: bool = True
    grounding: object = None  # chat.grounding.Grounding: passages from an index placed in each conversation
    sources: dict = None  # conversation key -> the `source` its record named (the document its answer is from)
    modality = "chat"

    @property
    def fingerprint(self) -> str:
        if self.grounding is None:
            return self.corpus.fingerprint
        return hashlib.sha256(f"{self.corpus.fingerprint}|{self.grounding.fingerprint}".encode()).hexdigest()[:16]

    def attach_index(self, path: str | Path, settings) -> None:
        """Ground answers in the index at `path` from now on (sampling and serving; the weights stay the same)."""
        from genlab.modalities.chat.grounding import Grounding

        self.grounding = Grounding.open(settings, str(path))

    def source_of(self, messages: list[dict]) -> str | None:
        return (self.sources or {}).get(conversation_key(messages))

    @property
    def splits(self) -> dict:
        return self.corpus.splits

    def split_conversations(self, split: str) -> list[list[dict]]:
        return [self.conversations[i] for i in self.corpus.splits[split]]

    def spec(self) -> DataSpec:
        return DataSpec(vocab_size=self.tokenizer.vocab_size, block_size=self.block_size, packed=self.packing)

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False) -> ChatStream:
        return ChatStream(self.encoded["train"], self.block_size + 1, batch_size, seed, self.packing,
                          self.tokenizer.eot_id)

    def validation_batches(self, batch_size: int, binarize_seed: int | None = None):
        return self.batches("val", batch_size)

    def batches(self, split: str, batch_size: int, binarize_seed: int | None = None, limit: int | None = None):
        """Fixed-order batches of a split's conversations (packed as in training), each token scored once."""
        encoded = self.encoded[split]
        rows = pack_rows(encoded.lengths, np.arange(len(encoded.ids)), self.block_size + 1, self.packing)
        if limit is not None:
            rows = rows[:limit]
        for start in range(0, len(rows), batch_size):
            yield row_batch(encoded, rows[start: start + batch_size], self.tokenizer.eot_id)

    def likelihood_split(self) -> str:
        return "test" if len(self.encoded["test"].ids) else "val"

    def characters(self, split: str) -> int:
        """Characters of the scored text: the answers (held-out splits always score answers only)."""
        return sum(len(m["content"]) for c in self.split_conversations(split) for m in c
                   if m["role"] == "assistant" or (split == "train" and self.train_on == "all"))

    def describe(self) -> dict:
        info = {k: v for k, v in self.corpus.describe().items() if k in ("source", "exact_duplicates")}
        info["fingerprint"] = self.fingerprint  # conversations, and the index grounding them
        info["split_conversations"] = {k: int(len(v)) for k, v in self.corpus.splits.items()}
        turns = [len(c) for c in self.conversations]
        train = self.encoded["train"]
        window = self.block_size + 1
        rows = pack_rows(train.lengths, np.arange(len(train.ids)), window, self.packing)
        return {**info, "conversations": len(self.conversations),
                "turns": {"min": min(turns), "median": float(np.median(turns)), "max": max(turns)},
                "tokenizer": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
                "block_size": self.block_size, "train_on": self.train_on, "packing": self.packing,
                "chat_template": self.template.source[:200],
                **({"retrieval": {"index": self.grounding.path, "k": self.grounding.k, "method": self.grounding.method,
                                  "passage_chars": self.grounding.passage_chars, "min_score": self.grounding.min_score}}
                   if self.grounding is not None else {}),
                "split_tokens": {k: int(e.lengths.sum()) for k, e in self.encoded.items()},
                "trained_tokens": {k: int(sum(w.sum() for w in e.weights)) for k, e in self.encoded.items()},
                "truncated_conversations": {k: e.truncated for k, e in self.encoded.items()},
                "train_rows_per_epoch": len(rows),
                "train_window_fill": round(float(train.lengths.sum()) / max(1, len(rows) * window), 4)}

    def save_artifacts(self, folder: Path) -> None:
        self.tokenizer.save(folder)
        self.template.save(folder)


def load_chat_dataset(cfg, base_dir: Path | None = None) -> ChatDataset:
    """Read, split, template and tokenise the conversations of `cfg` (a DataConfig). A run or base folder
    supplies its tokenizer and template; otherwise a tokenizer is trained with genlab's role tokens."""
    from genlab.modalities.text.tokenizers import load_tokenizer, train_tokenizer

    if cfg.path is None or isinstance(cfg.path, list):
        raise GenlabError("data.source=chat needs data.path: one JSONL file of conversations")
    records = read_conversation_records(cfg.path)
    if cfg.limit is not None:
        records = records[: cfg.limit]
    corpus = split_conversations([m for m, _ in records], cfg, str(cfg.path))
    conversations = [json.loads(d) for d in corpus.documents]
    sources = {conversation_key(m): s for m, s in records if s is not None}
    grounding = None
    if cfg.retrieval.index is not None:
        from genlab.modalities.chat.grounding import Grounding

        grounding = Grounding.open(cfg.retrieval)
    shown = conversations if grounding is None else [grounding.ground_training(c) for c in conversations]
    if base_dir is not None and (Path(base_dir) / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(base_dir)
        template = load_template(base_dir, tokenizer, cfg.chat_template)
    elif cfg.tokenizer == "pretrained":
        raise GenlabError("data.tokenizer=pretrained takes the tokenizer of the model fine-tuned (genlab finetune "
                          f"BASE ...), but {base_dir or 'no base'} holds no tokenizer.json")
    else:
        template = load_template(None, None, cfg.chat_template) if cfg.chat_template else ChatTemplate(GENLAB_TEMPLATE)
        rendered = [template.render(c) for c in shown]
        train = [rendered[i] for i in corpus.splits["train"]]
        tokenizer = train_tokenizer(cfg.tokenizer, rendered if cfg.tokenizer == "char" else train, cfg.vocab_size)
    # held-out splits always score the answers, so runs trained with train_on=all compare on the same tokens
    encoded = {k: encode_split([shown[i] for i in v], template, tokenizer,
                               cfg.train_on if k == "train" else "assistant", cfg.block_size + 1)
               for k, v in corpus.splits.items()}
    if not any(w.any() for w in encoded["train"].weights):
        raise GenlabError("no training token carries weight: every answer was cut off; raise data.block_size")
    return ChatDataset(corpus, conversations, tokenizer, template, encoded, cfg.block_size, cfg.train_on,
                       cfg.packing, grounding, sources)
