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


def support_share(answer: str, passages: list[str], n: int = 3) -> float | None:
    """Share of the answer's word n-grams (normalised as for F1) that occur in the passages: how much of it the
    retrieved text supports; None for an answer shorter than n words."""
    words = answer_tokens(answer)
    grams = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    if not grams:
        return None
    seen = set()
    for passage in passages:
        p = answer_tokens(passage)
        seen.update(tuple(p[i:i + n]) for i in range(len(p) - n + 1))
    return len(grams & seen) / len(grams)


def grounding_scores(answers: list[str], citations: list[list[dict]], abstained: list[bool],
                     sources: list[str | None]) -> dict:
    """Support share of the answers given (abstentions left out), citation precision (cited passages from the
    document the reference answer comes from, where the data names it), and the abstention rate."""
    support = [s for a, c, off in zip(answers, citations, abstained, strict=True) if not off
               and (s := support_share(a, [x["text"] for x in c])) is not None]
    precision = [sum(x["document"] == src for x in c) / len(c)
                 for c, off, src in zip(citations, abstained, sources, strict=True) if src and c and not off]
    return {"support_share": sum(support) / len(support) if support else None, "support_answers": len(support),
            "support_ngram": 3,
            "citation_precision": sum(precision) / len(precision) if precision else None,
            "citation_answers": len(precision),
            "abstention_rate": sum(abstained) / len(abstained) if abstained else 0.0}
