"""Test-set likelihood of latent-variable models (ELBO, importance-weighted log p(x)) in nats per image and bits
per dimension."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from genlab.data.images import iterate_batches
from genlab.models.base import GenerativeModel


@torch.no_grad()
def test_log_likelihood(model: GenerativeModel, images: torch.Tensor, labels: torch.Tensor | None, k: int,
                        max_images: int | None, seed: int, binarize: bool, quiet: bool = True) -> dict:
    """ELBO over the whole test split; IWAE with K samples over its first `max_images` images."""
    noise = torch.Generator().manual_seed(seed)
    dims = int(images[0].numel())
    binarize_seed = seed if binarize else None
    elbo_sum, n = 0.0, 0
    for batch in iterate_batches(images, labels, 1000, binarize_seed):
        elbo_sum += float(model.log_likelihood(batch, 1, noise)["elbo"].sum())
        n += batch.x.shape[0]
    m = images.shape[0] if max_images is None else min(max_images, images.shape[0])
    batch_size = max(1, min(100, model.config.iwae_chunk // max(1, min(k, 64))))
    iwae_sum, elbo_sub = 0.0, 0.0
    batches = iterate_batches(images[:m], None if labels is None else labels[:m], batch_size, binarize_seed)
    for batch in tqdm(batches, total=math.ceil(m / batch_size), disable=quiet, desc=f"IWAE K={k}"):
        out = model.log_likelihood(batch, k, noise)
        iwae_sum += float(out["iwae"].sum())
        elbo_sub += float(out["elbo"].sum())
    return {
        "headline": {"test_elbo_nats": elbo_sum / n, f"test_iwae_nats (K={k}, {m} images)": iwae_sum / m},
        "test_elbo_nats": elbo_sum / n,
        "test_elbo_images": n,
        "test_iwae_nats": iwae_sum / m,
        "test_elbo_same_images_nats": elbo_sub / m,
        "iwae_k": k,
        "iwae_images": m,
        "test_iwae_bits_per_dim": -iwae_sum / m / (dims * math.log(2)),
        "binarized_test": binarize,
    }
