"""Nearest-training-neighbour check: are samples closer to training images than unseen real images are?"""

from __future__ import annotations

import torch


def squared_distance_chunks(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 2048):
    """Yield (start, ||q - r||^2 for queries[start:start+chunk] x all reference rows), in float64.

    One matrix product per chunk via ||q||^2 + ||r||^2 - 2 q.r: no Python loop per row, bounded memory.
    """
    q = queries.reshape(queries.shape[0], -1).to(torch.float64)
    r = reference.reshape(reference.shape[0], -1).to(torch.float64)
    r_sq = r.pow(2).sum(1)
    for start in range(0, q.shape[0], chunk):
        qc = q[start : start + chunk]
        yield start, (qc.pow(2).sum(1, keepdim=True) + r_sq[None] - 2.0 * qc @ r.T).clamp_min_(0)


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor,
                       chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each query row to its nearest reference row, and that row's index."""
    dists, idxs = [], []
    for _, d2 in squared_distance_chunks(queries, reference, chunk):
        best, idx = d2.min(1)
        dists.append(best.sqrt())
        idxs.append(idx)
    return torch.cat(dists), torch.cat(idxs)


def memorisation_report(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> dict:
    """Compare sample->train distances with test->train distances (all images float in [0, 1]).

    A generator that draws fresh images from the data distribution puts about 1% of its samples below the
    1st percentile of test->train distances; a memorising one puts many more there. A sample closer to a
    training image than half that percentile is counted as a copy.
    """
    d_sample, idx_sample = nearest_neighbours(samples, train)
    d_test, _ = nearest_neighbours(test, train)
    p01 = float(torch.quantile(d_test, 0.01))
    copy_threshold = 0.5 * p01
    copies = d_sample < copy_threshold
    order = torch.argsort(d_sample)[:8]
    return {
        "n_samples": int(samples.shape[0]),
        "n_test_reference": int(test.shape[0]),
        "sample_to_train_median": float(d_sample.median()),
        "test_to_train_median": float(d_test.median()),
        "median_ratio": float(d_sample.median() / d_test.median()),
        "test_to_train_p01": p01,
        "fraction_below_test_p01": float((d_sample < p01).double().mean()),
        "copy_threshold": copy_threshold,
        "copies": int(copies.sum()),
        "closest_samples": order.tolist(),
        "closest_train_indices": idx_sample[order].tolist(),
        "closest_distances": d_sample[order].tolist(),
        "verdict": "no copies found" if int(copies.sum()) == 0 else f"{int(copies.sum())} samples look copied",
    }
