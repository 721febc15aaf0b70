"""Tokenizers trained on the corpus and saved with the run: characters, or byte-level BPE (Hugging Face
`tokenizers`). Both round-trip any UTF-8 text they cover exactly, CJK and emoji included, and reserve one
id for the end-of-document token placed between documents and one per chat role token (genlab's chat template),
so that any text run can later be fine-tuned on conversations without growing its vocabulary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from genlab.core.errors import GenlabError

EOT = "<|endoftext|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")  # genlab's chat template (modalities.chat)
TOKENIZERS = ("char", "bpe")


class CharTokenizer:
    """One id per distinct character of the corpus (sorted by code point), then EOT, then the special tokens
    (the chat role tokens; tokenizers saved before they existed have none)."""

    kind = "char"

    def __init__(self, chars: list[str], specials: tuple[str, ...] | list[str] = ()):
        self.chars, self.specials = chars, list(specials)
        self._codes = np.array([ord(c) for c in chars], dtype=np.int64)
        self.vocab_size = len(chars) + 1 + len(self.specials)
        self.eot_id = len(chars)
        self._special_ids = {s: self.eot_id + 1 + i for i, s in enumerate(self.specials)}
        self._split = re.compile("(" + "|".join(map(re.escape, self.specials)) + ")") if self.specials else None

    @classmethod
    def train(cls, documents: list[str]) -> CharTokenizer:
        return cls(sorted(set("".join(documents))), ROLE_TOKENS)

    def token_id(self, token: str) -> int | None:
        """The id of a special token (EOT, a role token), None when the vocabulary lacks it."""
        return self.eot_id if token == EOT else self._special_ids.get(token)

    def encode(self, text: str) -> np.ndarray:
        if self._split is not None and any(s in text for s in self.specials):
            parts = self._split.split(text)
            return np.concatenate([np.array([self._special_ids[p]], np.int32) if i % 2 else self._encode_chars(p)
                                   for i, p in enumerate(parts)]).astype(np.int32)
        return self._encode_chars(text)

    def _encode_chars(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.searchsorted(self._codes, codes)
        bad = (ids >= len(self._codes)) | (self._codes[np.minimum(ids, len(self._codes) - 1)] != codes)
        if bad.any():
            raise GenlabError(f"character {chr(int(codes[bad][0]))!r} is not in this tokenizer's vocabulary")
        return ids.astype(np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] if i < len(self.chars) else "" for i in np.asarray(ids).tolist())

    def save(self, folder: Path) -> None:
        (folder / "tokenizer.json").write_text(json.dumps({"genlab_tokenizer": "char", "chars": self.chars,
                                                           "specials": self.specials}, ensure_ascii=False))


class BPETokenizer:
    """Byte-level BPE (GPT-2 style) trained with Hugging Face `tokenizers`; no normaliser, so decoding is exact.
    It also wraps a pretrained model's `tokenizer.json`, whose end-of-text token may have another name."""

    kind = "bpe"

    def __init__(self, tokenizer, eot_id: int | None = None):
        self.tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.eot_id = tokenizer.token_to_id(EOT) if eot_id is None else eot_id
        if self.eot_id is None:
            raise GenlabError(f"the tokenizer has no end-of-text token ({EOT} or the model's eos_token_id)")

    @classmethod
    def train(cls, documents: list[str], vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT, *ROLE_TOKENS], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(documents, trainer)
        return cls(tok)

    def token_id(self, token: str) -> int | None:
        """The id of a special token (EOT, a role token, a model's end-of-turn token), None when absent."""
        return self.eot_id if token == EOT else self.tok.token_to_id(token)

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.array(e.ids, dtype=np.int32) for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.tok.decode(np.asarray(ids).tolist(), skip_special_tokens=True)

    def save(self, folder: Path) -> None:
        self.tok.save(str(folder / "tokenizer.json"))


def train_tokenizer(kind: str, documents: list[str], vocab_size: int = 4096):
    if kind == "char":
        return CharTokenizer.train(documents)
    if kind == "bpe":
        return BPETokenizer.train(documents, vocab_size)
    raise GenlabError(f"unknown tokenizer {kind!r}; choose one of: {', '.join(TOKENIZERS)}")


def load_tokenizer(folder: str | Path):
    """The tokenizer saved in a run directory or a Hugging Face model directory (plain JSON, never pickled)."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise GenlabError(f"no tokenizer.json in {folder}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GenlabError(f"{path} is not a valid tokenizer file") from None
    if raw.get("genlab_tokenizer") == "char":
        return CharTokenizer(list(raw["chars"]), raw.get("specials", ()))
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises its own exception type
        raise GenlabError(f"{path} is not a valid tokenizer file: {str(exc)[:200]}") from None
    return BPETokenizer(tok, None if tok.token_to_id(EOT) is not None else _model_eos_id(Path(folder)))


def _model_eos_id(folder: Path) -> int | None:
    """A Hugging Face model's end-of-sequence id from its config.json, when the tokenizer names it otherwise."""
    config = folder / "config.json"
    try:
        eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token_id") if config.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GenlabError(f"{config} is not valid JSON") from None
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    return eos if isinstance(eos, int) else None


def encode_documents(tokenizer, documents: list[str]) -> np.ndarray:
    """All documents as one token stream, each followed by EOT."""
    if not documents:
        return np.zeros(0, dtype=np.int32)
    eot = np.array([tokenizer.eot_id], dtype=np.int32)
    return np.concatenate([part for ids in tokenizer.encode_batch(documents) for part in (ids, eot)])
