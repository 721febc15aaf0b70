"""Text sample metrics that need no reference: memorisation as the longest verbatim overlap with the training
text (against the same figure for held-out real documents), and distinct-n diversity."""

from __future__ import annotations

import bisect
import re

import numpy as np
from tqdm import tqdm

_UNITS = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")


def cjk_fraction(texts: list[str]) -> float:
    """Share of characters that are CJK ideographs: decides Chinese-aware tokenisation in text metrics."""
    chars = "".join(texts)
    return sum(1 for c in chars if "\u3400" <= c <= "\u9fff") / max(1, len(chars))


class SubstringIndex:
    """Answers "what is the longest substring of this string that occurs in the corpus?" exactly, through a
    suffix array of the corpus built once (O(n log n), vectorised) and binary searches over it per query."""

    def __init__(self, text: str, quiet: bool = True):
        self.text = text
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # str's order
        sa = suffix_array(codes, quiet)
        self._suffixes = memoryview(sa)  # indexing a memoryview gives Python ints, which bisect needs

    def occurs(self, pattern: str) -> bool:
        """Is `pattern` a substring of the corpus? One binary search over the sorted suffixes."""
        text, width = self.text, len(pattern)
        i = bisect.bisect_left(self._suffixes, pattern, key=lambda p: text[p: p + width])
        return i < len(self._suffixes) and text[self._suffixes[i]: self._suffixes[i] + width] == pattern

    def longest_overlap(self, text: str) -> int:
        """Length in characters of the longest substring of `text` that also occurs in the corpus."""
        best = 0
        for i in range(len(text)):  # only a match longer than the best so far matters, so at most
            while i + best < len(text) and self.occurs(text[i: i + best + 1]):  # 2 * len(text) searches
                best += 1
        return best


def suffix_array(codes: np.ndarray, quiet: bool = True) -> np.ndarray:
    """Start of every suffix of `codes` in lexicographic order, a suffix before the longer ones it begins:
    prefix doubling (Manber & Myers 1993) that re-sorts only the suffixes still tied with another (Larsson &
    Sadakane 2007), starting from as many characters as fit in one int64. A suffix's rank is the position
    in the array of the first suffix of its tie group."""
    n = len(codes)
    index = np.int32 if n < 2**31 else np.int64
    if n == 0:
        return np.zeros(0, index)
    present = np.zeros(int(codes.max()) + 1, dtype=bool)
    present[codes] = True
    dense = np.cumsum(present, dtype=np.int64)[codes]  # 1..alphabet size; 0 marks the end of the text
    bits = int(present.sum()).bit_length()
    width = max(1, 63 // bits)
    key = np.zeros(n, dtype=np.int64)
    for j in range(min(width, n)):  # the first `width` characters of each suffix, packed
        key <<= bits
        key[: n - j] |= dense[j:]
    del dense
    order = np.argsort(key)  # ties are broken later, so any sort will do
    key = key[order]
    sa = order.astype(index)
    del order
    first = np.ones(n, dtype=bool)  # first of its tie group
    first[1:] = key[1:] != key[:-1]
    del key
    rank = np.empty(n, dtype=index)
    rank[sa] = np.maximum.accumulate(np.where(first, np.arange(n, dtype=index), 0))
    tied = np.flatnonzero(~(first & np.append(first[1:], True))).astype(index)  # positions in `sa`
    length = width  # ranks order the suffixes by their first `length` characters
    with tqdm(total=n, initial=n - len(tied), disable=quiet, desc="memorisation index", unit="suffix",
              unit_scale=True) as bar:
        while len(tied):
            starts = sa[tied].astype(np.int64)
            after = starts + length
            second = np.where(after < n, rank[np.minimum(after, n - 1)], -1).astype(np.int64)
            pair = rank[starts].astype(np.int64) * (n + 1) + second + 1
            order = np.argsort(pair)  # a group keeps its slots: rank is the major key
            starts, pair = starts[order], pair[order]
            sa[tied] = starts
            first = np.ones(len(pair), dtype=bool)
            first[1:] = pair[1:] != pair[:-1]
            rank[starts] = tied[np.maximum.accumulate(np.where(first, np.arange(len(pair)), 0))]
            still = ~(first & np.append(first[1:], True))
            bar.update(int(len(tied) - still.sum()))
            tied = tied[still]
            length *= 2
    return sa


def memorisation_report(samples: list[str], train_text: str, held_out: list[str], copy_length: int = 50,
                        quiet: bool = True) -> dict:
    """Longest verbatim overlap of each sample with the training text, beside the same for real held-out
    documents (what a model that generalises looks like); `copy_length`+ characters count as a copy."""
    index = SubstringIndex(train_text, quiet)
    queries = [*samples, *(d[:2000] for d in held_out)]
    overlaps = [index.longest_overlap(q) for q in tqdm(queries, disable=quiet, desc="longest overlaps")]
    ours = np.array(overlaps[: len(samples)], dtype=np.int64)
    real = np.array(overlaps[len(samples):], dtype=np.int64)
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
