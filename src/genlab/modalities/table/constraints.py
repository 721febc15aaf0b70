"""Rules synthetic rows must satisfy, enforced by rejecting rows that break them and drawing more, with the
rejection rate reported (a high rate says the model has not learned the rule, which is worth knowing).

Kinds (data.constraints in a recipe, a list of mappings):
  {kind: range, column: carat, min: 0.2, max: 5.0}   value inside [min, max] (either bound optional)
  {kind: positive, column: price}                    value > 0
  {kind: inequality, low: y, high: x}                low <= high on every row
  {kind: combinations, columns: [cut, color]}        only value combinations present in the training rows
Missing values pass every rule (missingness is the model's to learn).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from genlab.core.errors import GenlabError
from genlab.modalities.table.schema import Schema

KINDS = {"range": ("column",), "positive": ("column",), "inequality": ("low", "high"), "combinations": ("columns",)}


def check_constraints(constraints: list[dict], schema: Schema) -> None:
    """One clear error for a malformed rule or a column it cannot apply to."""
    numeric = {c.name for c in schema.kept if c.kind in ("continuous", "integer", "datetime")}
    kept = {c.name for c in schema.kept}
    for i, rule in enumerate(constraints):
        kind = rule.get("kind") if isinstance(rule, dict) else None
        if kind not in KINDS or any(k not in rule for k in KINDS[kind]):
            raise GenlabError(f"data.constraints[{i}]: expected one of " + "; ".join(
                f"{{kind: {k}, {', '.join(v)}}}" for k, v in KINDS.items()) + f", got {rule!r}")
        names = rule["columns"] if kind == "combinations" else [rule[k] for k in KINDS[kind]]
        allowed = kept if kind == "combinations" else numeric
        bad = [n for n in names if n not in allowed]
        if bad:
            raise GenlabError(f"data.constraints[{i}] ({kind}): {bad[0]!r} is not a "
                              f"{'modelled' if kind == 'combinations' else 'numeric'} column")


def satisfied(rows: pd.DataFrame, constraints: list[dict], train: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows that keep every rule."""
    ok = np.ones(len(rows), dtype=bool)
    for rule in constraints:
        kind = rule["kind"]
        if kind in ("range", "positive"):
            x = pd.to_numeric(rows[rule["column"]], errors="coerce")
            low, high = (0.0, None) if kind == "positive" else (rule.get("min"), rule.get("max"))
            good = pd.Series(True, index=rows.index)
            if low is not None:
                good &= (x > low) if kind == "positive" else (x >= low)
            if high is not None:
                good &= x <= high
            ok &= (good | x.isna()).to_numpy()
        elif kind == "inequality":
            low, high = (pd.to_numeric(rows[rule[k]], errors="coerce") for k in ("low", "high"))
            ok &= ((low <= high) | low.isna() | high.isna()).to_numpy()
        else:
            cols = list(rule["columns"])
            seen = set(map(tuple, train[cols].astype(str).to_numpy()))
            ok &= np.array([tuple(r) in seen for r in rows[cols].astype(str).to_numpy()], dtype=bool)
    return ok


def constrained_rows(draw: Callable[[int, int], pd.DataFrame], n: int, constraints: list[dict],
                     train: pd.DataFrame, max_rounds: int = 50,
                     wanted: Callable[[pd.DataFrame], np.ndarray] | None = None,
                     asked: str = "") -> tuple[pd.DataFrame, dict]:
    """n rows keeping every rule and, when given, `wanted` (the conditions asked of every row, described by
    `asked`): `draw(count, round)` gives candidate rows (round seeds the draw), rows that break a rule or miss a
    condition are dropped and more drawn, at most `max_rounds` times. Returns the rows and {drawn, rejected,
    rejection_rate} plus, with conditions, {condition_rejected, acceptance_rate}."""
    if not constraints and wanted is None:
        return draw(n, 0), {"drawn": n, "rejected": 0, "rejection_rate": 0.0}
    kept: list[pd.DataFrame] = []
    have = drawn = missed = 0
    for round_ in range(max_rounds):
        batch = draw(max(n - have, 64) * 2 if round_ else n, round_)
        drawn += len(batch)
        hit = wanted(batch) if wanted is not None else np.ones(len(batch), dtype=bool)
        missed += int((~hit).sum())
        good = batch[hit & satisfied(batch, constraints, train)]
        kept.append(good)
        have += len(good)
        if have >= n:
            rows = pd.concat(kept, ignore_index=True).iloc[:n]
            rejected = drawn - have
            stats = {"drawn": drawn, "rejected": rejected, "rejection_rate": rejected / drawn}
            if wanted is not None:
                stats.update(condition_rejected=missed, acceptance_rate=(drawn - missed) / drawn)
            return rows, stats
    if wanted is not None and missed:
        raise GenlabError(f"only {drawn - missed} of {drawn} generated rows had {asked} ({have} of {n} kept after "
                          f"{max_rounds} rounds); the model rarely generates it: ask for fewer rows, or train "
                          "longer / a conditional family (ctgan)")
    raise GenlabError(f"the constraints rejected {drawn - have} of {drawn} generated rows ({have} of {n} kept); "
                      "the model has not learned them well enough to sample by rejection")
