"""A differentially private baseline for tables: independent noisy marginals.

Each kept column becomes a histogram on public bins (categories from the schema, numbers in `bins` equal-width bins
on the schema's public bounds, plus a missing bin where the column allows it); every count gets Laplace noise; rows
are drawn column by column from the noisy histograms, independently. Under add/remove-one-row neighbours a row moves
one count in each of the d histograms, so the L1 sensitivity of all of them together is d and Laplace noise of scale
d / epsilon gives pure epsilon-DP (delta = 0). Whatever a model trained under train.privacy at the same epsilon
learns beyond this (correlations between columns) is what the model is worth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genlab.core.errors import GenlabError
from genlab.modalities.table.schema import Schema
from genlab.modalities.table.transform import _range, _restore, numeric_values


def laplace_scale(columns: int, epsilon: float) -> float:
    """Laplace scale per count: L1 sensitivity (one count per column) over epsilon."""
    if epsilon <= 0 or columns < 1:
        raise GenlabError(f"noisy marginals need epsilon > 0 and at least one column; got {epsilon}, {columns}")
    return columns / epsilon


def _bins(c, values: pd.Series, bins: int) -> tuple[np.ndarray, list]:
    """Each value's bin index (the last one: missing) and the bins' labels, from public information only."""
    if c.kind in ("categorical", "boolean"):
        index = {str(v): i for i, v in enumerate(c.categories)}
        codes = values.map(lambda v: len(c.categories) if pd.isna(v) else index.get(str(v), -1)).to_numpy()
        if (codes < 0).any():
            raise GenlabError(f"column {c.name!r} has a value outside its public categories")
        return codes.astype(np.int64), list(c.categories) + ([None] if c.missing else [])
    lo, hi = _range(c)
    x = numeric_values(values, c).to_numpy()
    edges = np.linspace(lo, hi, bins + 1)
    codes = np.clip(np.searchsorted(edges, np.clip(x, lo, hi), side="right") - 1, 0, bins - 1)
    codes = np.where(np.isnan(x), bins, codes)
    return codes.astype(np.int64), [(edges[i], edges[i + 1]) for i in range(bins)] + ([None] if c.missing else [])


def noisy_marginals(train: pd.DataFrame, schema: Schema, epsilon: float, bins: int = 20, seed: int = 0) -> dict:
    """{column: (labels, noisy probabilities)}, the noisy counts (before clipping at 0, the only thing computed from
    the rows) and the Laplace scale; everything after the noise is post-processing."""
    kept = schema.kept
    scale = laplace_scale(len(kept), epsilon)
    rng = np.random.default_rng(seed)
    out, released = {}, {}
    for c in kept:
        codes, labels = _bins(c, train[c.name], bins)
        counts = np.bincount(codes[codes < len(labels)], minlength=len(labels)).astype(np.float64)
        released[c.name] = counts + rng.laplace(0.0, scale, len(labels))
        noisy = np.clip(released[c.name], 0.0, None)
        probs = noisy / noisy.sum() if noisy.sum() > 0 else np.full(len(labels), 1.0 / len(labels))
        out[c.name] = (labels, probs)
    return {"columns": out, "noisy_counts": released, "laplace_scale": scale, "epsilon": epsilon, "delta": 0.0}


def sample_marginals(marginals: dict, schema: Schema, n: int, seed: int = 0) -> pd.DataFrame:
    """n rows, each column drawn independently: a bin by its noisy probability, a number uniformly inside it."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in schema.kept:
        labels, probs = marginals["columns"][c.name]
        picks = rng.choice(len(labels), n, p=probs)
        if c.kind in ("categorical", "boolean"):
            out[c.name] = pd.Series(np.array(labels, dtype=object)[picks], dtype=object)
            continue
        x = np.full(n, np.nan)
        for i, label in enumerate(labels):
            if label is not None:
                hit = picks == i
                x[hit] = rng.uniform(label[0], label[1], int(hit.sum()))
        if c.kind == "integer":
            x = np.round(x)
        out[c.name] = _restore(x, c)
    return pd.DataFrame(out)
