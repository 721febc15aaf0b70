"""Preference data: JSONL records of `prompt`, `chosen` and `rejected` completions, split by record, tokenised
with the tokenizer (and chat template, when the base is a chat run) of the model being tuned, and batched as
row pairs (chosen, rejected) with weight on the completion tokens only, one sequence per row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.core.batch import Batch, EpochCycle
from genlab.core.errors import GenlabError
from genlab.core.spec import DataSpec
from genlab.core.textfiles import jsonl_records, read_text_file
from genlab.modalities.chat.template import TEMPLATE_FILE, ChatTemplate, encode_conversation, load_template
from genlab.modalities.text.data import TextCorpus, split_corpus

FIELDS = ("prompt", "chosen", "rejected")


@dataclass
class PairEncoder:
    """How a (prompt, completion) becomes tokens for one model: through its chat template (the prompt a user
    message, the completion the answer, its end-of-turn marker included) or as plain text continued after EOT
    and closed by EOT. A completion is a whole answer: where it stops is part of what is preferred."""

    tokenizer: object
    template: ChatTemplate | None

    def encode(self, prompt: str, completion: str) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, 0/1 weight of each: 1 on the completion's tokens)."""
        if self.template is not None:
            return encode_conversation(self.template, self.tokenizer, [{"role": "user", "content": prompt},
                                                                       {"role": "assistant", "content": completion}])
        head = np.concatenate([[self.tokenizer.eot_id], self.tokenizer.encode(prompt)]).astype(np.int32)
        tail = np.concatenate([self.tokenizer.encode(completion), [self.tokenizer.eot_id]]).astype(np.int32)
        return (np.concatenate([head, tail]),
                np.concatenate([np.zeros(len(head), np.float32), np.ones(len(tail), np.float32)]))

    def prompt_ids(self, prompt: str) -> list[int]:
        if self.template is not None:
            from genlab.modalities.chat.generate import prompt_ids

            return prompt_ids(self, [{"role": "user", "content": prompt}])
        return [self.tokenizer.eot_id, *np.asarray(self.tokenizer.encode(prompt)).tolist()]

    def stops(self) -> tuple[tuple[int, ...], list[str]]:
        """(token ids, strings) that end a completion besides EOT: the template's end-of-turn marker."""
        if self.template is None:
            return (), []
        from genlab.modalities.chat.generate import end_of_turn

        return end_of_turn(self)


def encoder_of(dataset) -> PairEncoder:
    """The PairEncoder of a text, chat or prefs run's dataset."""
    tokenizer = getattr(dataset, "tokenizer", None)
    if tokenizer is None:
        raise GenlabError("preference pairs need a language-model run (text or chat)")
    return PairEncoder(tokenizer, getattr(dataset, "template", None))


def read_pairs(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"data path not found: {path}" if not path.exists() else f"{path} is a folder; preference "
                          "data is one JSONL file")
    out = []
    for number, record, problem in jsonl_records(read_text_file(path)):
        if problem:
            raise GenlabError(f"{path} line {number} {problem}")
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in FIELDS):
            raise GenlabError(f"{path} line {number} needs string 'prompt', 'chosen' and 'rejected'")
        out.append({k: record[k] for k in FIELDS})
    if len(out) < 2:
        raise GenlabError(f"{path} holds {len(out)} preference pair(s); a split needs at least two")
    return out


def read_prompts(path: str | Path) -> list[str]:
    """Prompts, one per line of a .txt file, or the `prompt` of each JSONL record."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"prompts file not found: {path}")
    lines = [line for line in read_text_file(path).splitlines() if line.strip()]
    if path.suffix.lower() != ".jsonl":
        prompts = lines
    else:
        prompts = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GenlabError(f"{path} record {number} is not valid JSON: {exc.msg}") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise GenlabError(f"{path} record {number} needs a string 'prompt'")
            prompts.append(record["prompt"])
    if not prompts:
        raise GenlabError(f"{path} holds no prompts")
    return prompts


@dataclass
class EncodedPairs:
    ids: list[np.ndarray]  # chosen, rejected, chosen, ... (two per pair)
    weights: list[np.ndarray]


def pair_batch(encoded: EncodedPairs, pairs: list[int], pad_id: int) -> Batch:
    """Rows (chosen, rejected) of each pair, right-padded (pads weigh 0)."""
    rows = [r for p in pairs for r in (2 * p, 2 * p + 1)]
    width = max(len(encoded.ids[r]) for r in rows)
    x = np.full((len(rows), width), pad_id, dtype=np.int64)
    w = np.zeros((len(rows), width), dtype=np.float32)
    for i, r in enumerate(rows):
        n = len(encoded.ids[r])
        x[i, :n], w[i, :n] = encoded.ids[r], encoded.weights[r]
    return Batch(torch.from_numpy(x), None, mask=torch.from_numpy(w[:, 1:]))


class PairStream:
    """Endless training batches of `batch_size` pairs (2 x batch_size rows), reshuffled each epoch, reproducible
    from (seed, epoch, position)."""

    def __init__(self, encoded: EncodedPairs, batch_size: int, seed: int, pad_id: int):
        n = len(encoded.ids) // 2
        if n < 1:
            raise GenlabError("the training split holds no preference pairs")
        self.encoded, self.batch_size, self.pad_id = encoded, batch_size, pad_id
        self.pairs = EpochCycle(lambda epoch: np.random.default_rng([seed, epoch]).permutation(n).tolist())

    def next(self, noise: torch.Generator | None = None) -> Batch:
        return pair_batch(self.encoded, self.pairs.take(self.batch_size), self.pad_id)

    def state(self) -> dict[str, int]:
        return self.pairs.state()

    def load_state(self, state: dict[str, int]) -> None:
        self.pairs.load_state(state)


@dataclass
class PrefsDataset:
    corpus: TextCorpus  # documents are the records as canonical JSON
    records: list[dict]
    tokenizer: object
    template: ChatTemplate | None
    encoded: dict[str, EncodedPairs]
    block_size: int
    truncated: int
    modality = "prefs"

    @property
    def fingerprint(self) -> str:
        return self.corpus.fingerprint

    @property
    def splits(self) -> dict:
        return self.corpus.splits

    def split_records(self, split: str) -> list[dict]:
        return [self.records[i] for i in self.corpus.splits[split]]

    def split_prompts(self, split: str) -> list[str]:
        return list(dict.fromkeys(r["prompt"] for r in self.split_records(split)))

    def spec(self) -> DataSpec:
        return DataSpec(vocab_size=self.tokenizer.vocab_size, block_size=self.block_size)

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False) -> PairStream:
        return PairStream(self.encoded["train"], batch_size, seed, self.tokenizer.eot_id)

    def validation_batches(self, batch_size: int, binarize_seed: int | None = None):
        return self.batches("val", batch_size)

    def batches(self, split: str, batch_size: int, binarize_seed: int | None = None, limit: int | None = None):
        """Fixed-order batches of a split's pairs (`batch_size` rows, rounded up to whole pairs)."""
        n = len(self.encoded[split].ids) // 2
        if limit is not None:
            n = min(n, limit)
        step = max(1, batch_size // 2)
        for start in range(0, n, step):
            yield pair_batch(self.encoded[split], list(range(start, min(n, start + step))), self.tokenizer.eot_id)

    def likelihood_split(self) -> str:
        return "test" if len(self.corpus.splits["test"]) else "val"

    def characters(self, split: str) -> int:
        return sum(len(r["chosen"]) + len(r["rejected"]) for r in self.split_records(split))

    def describe(self) -> dict:
        info = {k: v for k, v in self.corpus.describe().items() if k in ("source", "fingerprint", "exact_duplicates")}
        return {**info, "pairs": len(self.records), "split_pairs": {k: int(len(v)) for k, v in self.splits.items()},
                "format": "chat template" if self.template is not None else "plain text after EOT",
                "tokenizer": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
                "block_size": self.block_size, "truncated_completions": self.truncated}

    def save_artifacts(self, folder: Path) -> None:
        self.tokenizer.save(folder)
        if self.template is not None:
            self.template.save(folder)


def load_prefs_dataset(cfg, base_dir: Path | None = None) -> PrefsDataset:
    """Read, split and tokenise the pairs of `cfg` (a DataConfig) with the tokenizer of `base_dir`, the run
    being tuned (or this run, when reopened); its chat template, when it has one, frames prompt and answer."""
    encoder = base_encoder(cfg, base_dir, "prefs")
    records = read_pairs(cfg.path)
    if cfg.limit is not None:
        records = records[: cfg.limit]
    corpus = split_corpus([json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records], cfg.val_fraction,
                          cfg.test_fraction, cfg.split_seed, source=str(cfg.path))
    records = [json.loads(d) for d in corpus.documents]
    tokenizer = encoder.tokenizer
    window, truncated = cfg.block_size + 1, 0
    encoded = {}
    for split, indices in corpus.splits.items():
        ids, weights = [], []
        for i in indices:
            for key in ("chosen", "rejected"):
                a, w = encoder.encode(records[i]["prompt"], records[i][key])
                if len(a) > window:
                    a, w, truncated = a[:window], w[:window], truncated + 1
                if not w[1:].any():
                    raise GenlabError(f"a {key} completion of prompt {records[i]['prompt'][:40]!r} lies beyond "
                                      f"data.block_size={cfg.block_size} tokens: shorten the prompt")
                ids.append(a)
                weights.append(w)
        encoded[split] = EncodedPairs(ids, weights)
    return PrefsDataset(corpus, records, tokenizer, encoder.template, encoded, cfg.block_size, truncated)


class Scorer:
    """What train.objective=grpo needs of the data: the reward of sampled completions (token ids decoded, cut at
    the end of turn) and the tokens that end a completion."""

    def __init__(self, encoder: PairEncoder, reward, prompts: dict[tuple[int, ...], str]):
        self.encoder, self.reward, self.prompts = encoder, reward, prompts
        stop_ids, self.stop_strings = encoder.stops()
        self.stop_ids = (encoder.tokenizer.eot_id, *stop_ids)

    def text(self, ids: list[int]) -> str:
        if ids and ids[-1] in self.stop_ids:
            ids = ids[:-1]
        text = self.encoder.tokenizer.decode(ids)
        cut = min((text.find(s) for s in self.stop_strings if s in text), default=-1)
        return text[:cut] if cut >= 0 else text

    def __call__(self, prompt_ids: list[int], completions: list[list[int]]) -> list[float]:
        prompt = self.prompts.get(tuple(prompt_ids), "")
        return self.reward.many([prompt] * len(completions), [self.text(c) for c in completions])


def prompt_batch(rows: list[list[int]]) -> Batch:
    """Prompts as B x L token ids, -1 after each one's end."""
    x = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        x[i, :len(r)] = r
    return Batch(torch.from_numpy(x), None)


class PromptStream:
    """Endless batches of training prompts, reshuffled each epoch, reproducible from (seed, epoch, position)."""

    def __init__(self, ids: list[list[int]], batch_size: int, seed: int):
        if not ids:
            raise GenlabError("the training split holds no prompts")
        self.ids, self.batch_size = ids, batch_size
        self.order = EpochCycle(lambda epoch: np.random.default_rng([seed, epoch]).permutation(len(ids)).tolist())

    def next(self, noise: torch.Generator | None = None) -> Batch:
        return prompt_batch([self.ids[i] for i in self.order.take(self.batch_size)])

    def state(self) -> dict[str, int]:
        return self.order.state()

    def load_state(self, state: dict[str, int]) -> None:
        self.order.load_state(state)


@dataclass
class PromptsDataset:
    """Prompts alone (data.source=prompts) and the reward their completions are scored by (data.reward): what
    online optimisation (train.objective=grpo) samples from and learns against."""

    corpus: TextCorpus  # documents are the prompts
    tokenizer: object
    template: ChatTemplate | None
    ids: dict[str, list[list[int]]]
    block_size: int
    reward: object
    modality = "prefs"

    @property
    def fingerprint(self) -> str:
        return self.corpus.fingerprint

    @property
    def splits(self) -> dict:
        return self.corpus.splits

    def split_prompts(self, split: str) -> list[str]:
        return self.corpus.split_documents(split)

    def scorer(self) -> Scorer:
        prompts = {tuple(i): p for split in self.ids for i, p in zip(self.ids[split], self.split_prompts(split),
                                                                    strict=True)}
        return Scorer(PairEncoder(self.tokenizer, self.template), self.reward, prompts)

    def spec(self) -> DataSpec:
        return DataSpec(vocab_size=self.tokenizer.vocab_size, block_size=self.block_size, score=self.scorer())

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False) -> PromptStream:
        return PromptStream(self.ids["train"], batch_size, seed)

    def validation_batches(self, batch_size: int, binarize_seed: int | None = None):
        return self.batches("val", batch_size)

    def batches(self, split: str, batch_size: int, binarize_seed: int | None = None, limit: int | None = None):
        rows = self.ids[split][:limit] if limit is not None else self.ids[split]
        for start in range(0, len(rows), batch_size):
            yield prompt_batch(rows[start: start + batch_size])

    def likelihood_split(self) -> None:
        """None: prompts alone hold no text to score a likelihood on."""
        return None

    def describe(self) -> dict:
        info = {k: v for k, v in self.corpus.describe().items() if k in ("source", "fingerprint", "exact_duplicates")}
        return {**info, "prompts": len(self.corpus.documents), "reward": self.reward.name,
                "split_prompts": {k: int(len(v)) for k, v in self.splits.items()},
                "format": "chat template" if self.template is not None else "plain text after EOT",
                "tokenizer": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
                "block_size": self.block_size}

    def save_artifacts(self, folder: Path) -> None:
        self.tokenizer.save(folder)
        if self.template is not None:
            self.template.save(folder)


def base_encoder(cfg, base_dir: Path | None, source: str) -> PairEncoder:
    """The tokenizer (and chat template) of the run being tuned."""
    from genlab.modalities.text.tokenizers import load_tokenizer

    if cfg.path is None or isinstance(cfg.path, list):
        raise GenlabError(f"data.source={source} needs data.path: one file")
    if base_dir is None or not (Path(base_dir) / "tokenizer.json").is_file():
        raise GenlabError(f"data.source={source} tunes a trained language model: genlab finetune BASE RECIPE (with "
                          f"train.objective={'dpo' if source == 'prefs' else 'grpo'}) takes the base's tokenizer")
    tokenizer = load_tokenizer(base_dir)
    chat = cfg.chat_template is not None or (Path(base_dir) / TEMPLATE_FILE).is_file()
    return PairEncoder(tokenizer, load_template(base_dir, tokenizer, cfg.chat_template) if chat else None)


def load_prompts_dataset(cfg, base_dir: Path | None = None) -> PromptsDataset:
    from genlab.rewards import load_reward

    if not cfg.reward:
        raise GenlabError("data.source=prompts needs data.reward: what completions are scored by (e.g. "
                          "data.reward=sentiment, or module:function)")
    encoder = base_encoder(cfg, base_dir, "prompts")
    reward = load_reward(cfg.reward)
    prompts = read_prompts(cfg.path)
    if cfg.limit is not None:
        prompts = prompts[: cfg.limit]
    if len(prompts) < 2:
        raise GenlabError(f"{cfg.path} holds {len(prompts)} prompt; a split needs at least two")
    corpus = split_corpus(prompts, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, source=str(cfg.path))
    ids = {}
    for split in corpus.splits:
        ids[split] = []
        for prompt in corpus.split_documents(split):
            row = encoder.prompt_ids(prompt)
            if len(row) >= cfg.block_size:
                raise GenlabError(f"prompt {prompt[:40]!r} leaves no room for a completion in data.block_size="
                                  f"{cfg.block_size} tokens")
            ids[split].append(row)
    return PromptsDataset(corpus, encoder.tokenizer, encoder.template, ids, cfg.block_size, reward)
