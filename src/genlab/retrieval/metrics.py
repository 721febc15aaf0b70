"""Retrieval metrics at the document level: a ranking of chunks is mapped to their documents and each document
counted once (at its best rank) before cutting at k, so five chunks of one answer are not five hits.
Relevance is binary: a query's relevant documents are a set of ids."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def dedupe(doc_ids: Iterable[str]) -> list[str]:
    """Documents in order of their first (best-ranked) chunk."""
    return list(dict.fromkeys(doc_ids))


def recall_at(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant documents among the first k distinct documents."""
    return len(set(dedupe(ranking)[:k]) & relevant) / len(relevant) if relevant else 0.0


def reciprocal_rank_at(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    """1 / rank of the first relevant document within the first k distinct documents, else 0."""
    return next((1 / rank for rank, d in enumerate(dedupe(ranking)[:k], 1) if d in relevant), 0.0)


def ndcg_at(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-gain nDCG: sum of 1/log2(rank+1) over relevant documents in the first k, over its best value."""
    dcg = sum(1 / math.log2(rank + 1) for rank, d in enumerate(dedupe(ranking)[:k], 1) if d in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def evaluate_rankings(rankings: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> dict[str, float]:
    """Means over queries of Recall@1/5/10, MRR@10 and nDCG@10; rankings are document ids of ranked chunks
    (duplicates allowed, they are removed here)."""
    if len(rankings) != len(relevant) or not rankings:
        raise ValueError(f"need one relevant set per ranking and at least one query (got {len(rankings)} "
                         f"rankings, {len(relevant)} relevant sets)")
    n = len(rankings)
    pairs = list(zip(rankings, relevant, strict=True))
    return {"queries": n,
            **{f"recall@{k}": sum(recall_at(r, rel, k) for r, rel in pairs) / n for k in (1, 5, 10)},
            "mrr@10": sum(reciprocal_rank_at(r, rel, 10) for r, rel in pairs) / n,
            "ndcg@10": sum(ndcg_at(r, rel, 10) for r, rel in pairs) / n}
