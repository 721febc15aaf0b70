"""Text sample metrics that need no reference: memorisation as the longest verbatim overlap with the training
text (against the same figure for held-out real documents), and distinct-n diversity."""

from __future__ import annotations

import re

import numpy as np

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_UNITS = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")


def cjk_fraction(texts: list[str]) -> float:
    """Share of characters that are CJK ideographs: decides Chinese-aware tokenisation in text metrics."""
    chars = "".join(texts)
    return sum(1 for c in chars if "\u3400" <= c <= "\u9fff") / max(1, len(chars))


def _inverse_mod_2_64(a: int) -> int:
    return pow(a, -1, 1 << 64)


class SubstringIndex:
    """Answers "does this string share a substring of length L with the corpus?" for any L, through
    polynomial hashes of every window (modulo 2**64, vectorised): window hash = sum_k s[i+k] * B^-k."""

    def __init__(self, text: str):
        self.codes = _codes(text)
        self.prefix, self.powers = _prefix_hashes(self.codes)
        self._cache: dict[int, np.ndarray] = {}

    def hashes(self, length: int) -> np.ndarray:
        if length not in self._cache:
            if len(self._cache) >= 16:  # bounded: 8 bytes per corpus character per cached length
                self._cache.pop(next(iter(self._cache)))
            self._cache[length] = np.unique(_window_hashes(self.prefix, self.powers, length))
        return self._cache[length]

    def longest_overlap(self, text: str) -> int:
        """Length in characters of the longest substring of `text` that also occurs in the corpus."""
        codes = _codes(text)
        prefix, powers = _prefix_hashes(codes)
        lo, hi = 0, min(len(codes), len(self.codes))
        while lo < hi:  # binary search: overlaps of length L imply overlaps of every shorter length
            mid = (lo + hi + 1) // 2
            found = np.isin(_window_hashes(prefix, powers, mid), self.hashes(mid)).any()
            lo, hi = (mid, hi) if found else (lo, mid - 1)
        return lo


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def _prefix_hashes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inv = np.uint64(_inverse_mod_2_64(int(_BASE)))
    n = len(codes)
    with np.errstate(over="ignore"):
        inv_powers = np.cumprod(np.concatenate([[np.uint64(1)], np.full(max(0, n - 1), inv, dtype=np.uint64)]))
        powers = np.cumprod(np.concatenate([[np.uint64(1)], np.full(max(0, n - 1), _BASE, dtype=np.uint64)]))
        prefix = np.concatenate([[np.uint64(0)], np.cumsum((codes + np.uint64(1)) * inv_powers[:n])])
    return prefix, powers


def _window_hashes(prefix: np.ndarray, powers: np.ndarray, length: int) -> np.ndarray:
    n = len(prefix) - 1
    if length > n or length <= 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (prefix[length:] - prefix[: n - length + 1]) * powers[: n - length + 1]


def memorisation_report(samples: list[str], train_text: str, held_out: list[str], copy_length: int = 50) -> dict:
    """Longest verbatim overlap of each sample with the training text, beside the same for real held-out
    documents (what a model that generalises looks like); `copy_length`+ characters count as a copy."""
    index = SubstringIndex(train_text)
    ours = np.array([index.longest_overlap(s) for s in samples])
    real = np.array([index.longest_overlap(d[:2000]) for d in held_out]) if held_out else np.zeros(0)
    return {
        "n_samples": len(samples),
        "longest_overlap_chars": {"median": float(np.median(ours)), "max": int(ours.max()) if len(ours) else 0},
        "held_out_longest_overlap_chars": {"median": float(np.median(real)) if len(real) else None,
                                           "n": len(real)},
        "copies": int((ours >= copy_length).sum()),
        "copy_length": copy_length,
        "verdict": "no copies found" if not (ours >= copy_length).any()
        else f"{int((ours >= copy_length).sum())} samples repeat >= {copy_length} characters of training text",
    }


def distinct_n(samples: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the samples (Li et al. 2016); words, CJK characters as words."""
    grams, total = set(), 0
    for s in samples:
        units = _UNITS.findall(s)
        for i in range(len(units) - n + 1):
            grams.add(tuple(units[i: i + n]))
            total += 1
    return len(grams) / total if total else 0.0


class _UnitTokenizer:
    """rouge-score's default tokenizer drops every non-ASCII character (all of Chinese); this keeps words,
    punctuation and each CJK character as a unit."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return [u.lower() for u in _UNITS.findall(text)]


def reference_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU (sacrebleu, its 'zh' tokenisation when the references are mostly Chinese, else '13a') and
    mean ROUGE-L F1 (rouge-score, CJK-aware units) of generated continuations against the true ones."""
    import sacrebleu
    from rouge_score import rouge_scorer

    tokenize = "zh" if cjk_fraction(references) > 0.3 else "13a"
    bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_UnitTokenizer())
    rouge = [scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references, strict=True)]
    return {"bleu": bleu.score, "bleu_tokenize": tokenize, "rouge_l_f1": float(np.mean(rouge)) if rouge else 0.0,
            "n": len(hypotheses)}


def self_bleu(samples: list[str]) -> float:
    """Mean sentence BLEU of each sample against all the others (Zhu et al. 2018): high means repetitive."""
    import sacrebleu

    if len(samples) < 2:
        return float("nan")
    tokenize = "zh" if cjk_fraction(samples) > 0.3 else "13a"
    scores = [sacrebleu.sentence_bleu(s, samples[:i] + samples[i + 1:], tokenize=tokenize).score
              for i, s in enumerate(samples)]
    return float(np.mean(scores))


CLAUSE_END = "，。！？；、"
_CLAUSE = re.compile(f"([^{CLAUSE_END}]+)([{CLAUSE_END}])")


def verse_lines(text: str) -> list[str]:
    """The body lines of a poem in the fortunes-zh layout: the 《title》 and 作者 lines are skipped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [line for line in lines if not line.startswith("《") and not line.startswith("作者")]


def regular_verse(text: str) -> dict:
    """Is `text` regulated verse in shape: every body line two clauses of the same length, 5 or 7 characters,
    the first closed by ， and the second by 。！？ or ； (e.g. 床前明月光，疑是地上霜。)? The line-length
    check of classical shi; it ignores tone and rhyme. Needs at least two body lines."""
    lines = verse_lines(text)
    clause_lengths = set()
    for line in lines:
        parts = _CLAUSE.findall(line)
        if "".join(a + b for a, b in parts) != line or len(parts) != 2:
            return {"regular": False, "lines": len(lines), "clause_length": None}
        (first, p1), (second, p2) = parts
        if p1 != "，" or p2 not in "。！？；" or len(first) != len(second):
            return {"regular": False, "lines": len(lines), "clause_length": None}
        clause_lengths.add(len(first))
    regular = len(lines) >= 2 and len(clause_lengths) == 1 and clause_lengths <= {5, 7}
    return {"regular": regular, "lines": len(lines), "clause_length": clause_lengths.pop() if regular else None}
