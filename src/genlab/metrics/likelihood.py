"""Test-set likelihood, one loop for every family: a family scores a batch (per-item figures in nats), this sums
them over a split; and the latent-variable bounds (ELBO, importance-weighted log p(x)) of VAEs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from tqdm import tqdm


@torch.no_grad()
def summed(batches: Iterable, score: Callable[..., dict[str, torch.Tensor]], total: int | None = None,
           desc: str = "likelihood", quiet: bool = True) -> dict[str, float]:
    """Sum every per-item figure `score(batch)` returns over fixed-order batches, in float64."""
    sums: dict[str, float] = {}
    for batch in tqdm(batches, total=total, disable=quiet, desc=desc):
        for k, v in score(batch).items():
            sums[k] = sums.get(k, 0.0) + float(v.double().sum())
    return sums


@torch.no_grad()
def test_log_likelihood(model, dataset, k: int, max_images: int | None, seed: int, binarize: bool,
                        quiet: bool = True) -> dict:
    """ELBO over the whole test split; IWAE with K samples over its first `max_images` images."""
    noise = torch.Generator().manual_seed(seed)
    n = int(dataset.splits["test"].numel())
    dims = int(dataset.spec().channels * dataset.spec().height * dataset.spec().width)
    binarize_seed = seed if binarize else None
    whole = summed(dataset.batches("test", 1000, binarize_seed),
                   lambda b: {"elbo": model.log_likelihood(b, 1, noise)["elbo"]})
    m = n if max_images is None else min(max_images, n)
    batch_size = max(1, min(100, model.config.iwae_chunk // max(1, min(k, 64))))
    sub = summed(dataset.batches("test", batch_size, binarize_seed, limit=m),
                 lambda b: model.log_likelihood(b, k, noise), math.ceil(m / batch_size), f"IWAE K={k}", quiet)
    return {
        "headline": {"test_elbo_nats": whole["elbo"] / n, f"test_iwae_nats (K={k}, {m} images)": sub["iwae"] / m},
        "test_elbo_nats": whole["elbo"] / n,
        "test_elbo_images": n,
        "test_iwae_nats": sub["iwae"] / m,
        "test_elbo_same_images_nats": sub["elbo"] / m,
        "iwae_k": k,
        "iwae_images": m,
        "test_iwae_bits_per_dim": -sub["iwae"] / m / (dims * math.log(2)),
        "binarized_test": binarize,
    }
