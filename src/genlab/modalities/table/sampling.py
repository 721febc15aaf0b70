"""Synthetic rows of a table run: drawn in batches from the family, decoded, kept only where they satisfy the
run's data.constraints, optionally conditioned on one categorical column's value (families that take conditions)."""

from __future__ import annotations

import torch

from genlab.core.validate import sample_count

MAX_ROWS = 1_000_000


def draw_encoded(model, n: int, seed: int, conditions: torch.Tensor | None = None, batch_size: int = 500):
    """n encoded rows; the same seed gives the same rows."""
    noise = torch.Generator().manual_seed(seed)
    options = {"conditions": conditions} if conditions is not None else {}
    return torch.cat([model.sample(min(batch_size, n - start), None, noise, **options)
                      for start in range(0, n, batch_size)])


def sample_rows(run, n: int, seed: int = 0, conditions: dict | None = None):
    """n synthetic rows as a DataFrame, keeping the run's data.constraints, every row holding `conditions`
    ({column: value}, several columns at once): families that take conditions are steered by the first one,
    then rows are kept only where every condition holds (what was drawn and rejected is in
    rows.attrs["constraints"], with the acceptance rate of the conditions)."""
    sample_count(n, MAX_ROWS)
    vector = (run.dataset.condition_vector(conditions) if conditions and run.model.accepts_conditions else None)
    rows, stats = run.dataset.sample_rows(lambda count, s: draw_encoded(run.model, count, s, vector), n, seed,
                                          conditions)
    rows.attrs["constraints"] = stats
    return rows
