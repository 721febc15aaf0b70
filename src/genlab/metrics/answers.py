"""Scores of generated answers against reference answers, as reading-comprehension benchmarks report them:
exact match and token F1 after SQuAD's normalisation (Rajpurkar et al. 2016), beside BLEU and ROUGE-L. On ASCII
text they equal the official SQuAD v1.1 script's; beyond it punctuation is any Unicode punctuation and each CJK
ideograph is a token (whitespace does not separate Chinese words)."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

import numpy as np

from genlab.metrics.text import reference_scores

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"([\u3400-\u9fff\uf900-\ufaff])")


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalise(text: str) -> str:
    """Lower case, punctuation removed, the English articles a / an / the removed, whitespace collapsed: so that
    "The Cat!" and "cat" count as the same answer."""
    text = "".join(ch for ch in text.lower() if not _is_punctuation(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """The normalised answer's whitespace tokens, each CJK ideograph a token of its own."""
    return _CJK.sub(r" \1 ", normalise(text)).split()


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the two answers are equal after normalisation, else 0.0."""
    return float(normalise(prediction) == normalise(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of precision and recall of the bag of answer tokens shared with the reference (each token
    counted as often as both hold it); 1.0 when both are empty after normalisation, 0.0 when only one is."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def answer_scores(predictions: list[str], references: list[str]) -> dict:
    """Mean token F1 and exact match, plus corpus BLEU and mean ROUGE-L F1 (metrics.text.reference_scores),
    of answers against their references."""
    f1 = [token_f1(p, r) for p, r in zip(predictions, references, strict=True)]
    em = [exact_match(p, r) for p, r in zip(predictions, references, strict=True)]
    return {"token_f1": float(np.mean(f1)) if f1 else 0.0, "exact_match": float(np.mean(em)) if em else 0.0,
            **reference_scores(predictions, references)}
