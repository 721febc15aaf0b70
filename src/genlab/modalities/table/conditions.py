"""Condition vectors over a table's categorical columns (CTGAN's conditional generator) and
training-by-sampling: pick a categorical column uniformly, a category with probability proportional to the
log of its frequency, then a training row holding it, so rare categories are trained on as often as needed.

The condition vector is one-hot over the concatenated category slots of all categorical columns (one slot
set per row). Everything here is derived from the spans, so models and streams agree on the layout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.batch import Batch


def category_blocks(spans: tuple[tuple[str, int], ...]) -> list[tuple[int, int]]:
    """(offset in the encoded row, width) of each categorical block."""
    out, offset = [], 0
    for part, width in spans:
        if part == "categories":
            out.append((offset, width))
        offset += width
    return out


def condition_width(spans) -> int:
    return sum(w for _, w in category_blocks(spans))


def category_frequencies(rows: torch.Tensor, spans) -> tuple[float, ...]:
    """Per category slot, its frequency within its column on `rows` (encoded training rows)."""
    freqs: list[float] = []
    for offset, width in category_blocks(spans):
        counts = rows[:, offset:offset + width].sum(0).double()
        freqs += (counts / counts.sum().clamp_min(1)).tolist()
    return tuple(freqs)


class BalancedStream:
    """Endless batches by training-by-sampling, each with its condition vector. Batch k depends on
    (seed, k) only, so a checkpoint stores k and a resumed run draws the same batches."""

    def __init__(self, rows: torch.Tensor, spans, batch_size: int, seed: int):
        self.rows, self.batch_size, self.seed, self.drawn = rows, batch_size, seed, 0
        self.blocks = category_blocks(spans)
        self.width = condition_width(spans)
        self.starts = np.cumsum([0] + [w for _, w in self.blocks])[:-1]
        self.members, self.log_freq = [], []  # per column: row ids per category; log-frequency weights
        for offset, width in self.blocks:
            codes = rows[:, offset:offset + width].argmax(1).numpy()
            self.members.append([np.flatnonzero(codes == k) for k in range(width)])
            counts = np.bincount(codes, minlength=width).astype(np.float64)
            w = np.log(counts + 1) * (counts > 0)
            self.log_freq.append(w / w.sum())

    def next(self, noise=None) -> Batch:
        rng = np.random.default_rng([self.seed, self.drawn])
        self.drawn += 1
        if not self.blocks:
            ids = rng.integers(0, self.rows.shape[0], self.batch_size)
            return Batch(self.rows[torch.from_numpy(ids)], None)
        columns = rng.integers(0, len(self.blocks), self.batch_size)
        cond = torch.zeros(self.batch_size, self.width)
        ids = np.empty(self.batch_size, dtype=np.int64)
        for c in np.unique(columns):  # vectorised per column and category, not per row
            rows = np.flatnonzero(columns == c)
            ks = rng.choice(len(self.log_freq[c]), len(rows), p=self.log_freq[c])
            for k in np.unique(ks):
                chosen = rows[ks == k]
                ids[chosen] = rng.choice(self.members[c][k], len(chosen))
            cond[torch.from_numpy(rows), torch.from_numpy(self.starts[c] + ks)] = 1.0
        return Batch(self.rows[torch.from_numpy(ids)], None, cond=cond)

    def state(self) -> dict[str, int]:
        return {"drawn": self.drawn}

    def load_state(self, state: dict[str, int]) -> None:
        self.drawn = int(state["drawn"])


def encoded_fidelity(real: torch.Tensor, fake: torch.Tensor, spans) -> torch.Tensor:
    """A validation figure for table families (lower is better, 0 for identical batches): the mean over blocks
    of the KS statistic between real and generated normalised values (value blocks) and the total-variation
    distance between their category / mode frequencies (softmax blocks). What early stopping watches."""
    scores = []
    for (part, a), (_, b) in zip(split_blocks(real, spans), split_blocks(fake, spans), strict=True):
        if part == "value":
            a, b = a[:, 0].sort().values, b[:, 0].sort().values
            grid = torch.cat([a, b])
            cdf_a = torch.searchsorted(a, grid, right=True) / a.numel()
            cdf_b = torch.searchsorted(b, grid, right=True) / b.numel()
            scores.append((cdf_a - cdf_b).abs().max())
        else:
            p = F.one_hot(a.argmax(1), a.shape[1]).float().mean(0)
            q = F.one_hot(b.argmax(1), b.shape[1]).float().mean(0)
            scores.append(0.5 * (p - q).abs().sum())
    return torch.stack(scores).mean()


def split_blocks(x: torch.Tensor, spans) -> list[tuple[str, torch.Tensor]]:
    """(part, block) pairs of an encoded batch, in order."""
    return list(zip((p for p, _ in spans), x.split([w for _, w in spans], dim=1), strict=True))
