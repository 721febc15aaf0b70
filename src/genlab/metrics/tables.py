"""Column-wise fidelity of synthetic rows to real ones: the Kolmogorov-Smirnov statistic for numbers and
dates, total-variation distance for categories (both 0 for identical distributions, 1 for disjoint ones)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genlab.tables.schema import Schema


def total_variation(real: pd.Series, fake: pd.Series) -> float:
    """Half the L1 distance between the category frequencies (missing counted as a category)."""
    p = real.astype(object).where(real.notna(), "<missing>").value_counts(normalize=True)
    q = fake.astype(object).where(fake.notna(), "<missing>").value_counts(normalize=True)
    keys = p.index.union(q.index)
    return float(0.5 * np.abs(p.reindex(keys, fill_value=0) - q.reindex(keys, fill_value=0)).sum())


def ks_statistic(real: np.ndarray, fake: np.ndarray) -> float:
    """Largest gap between the two empirical CDFs (scipy.stats.ks_2samp's statistic, computed directly)."""
    real, fake = np.sort(real), np.sort(fake)
    grid = np.concatenate([real, fake])
    cdf_real = np.searchsorted(real, grid, side="right") / len(real)
    cdf_fake = np.searchsorted(fake, grid, side="right") / len(fake)
    return float(np.abs(cdf_real - cdf_fake).max())


def column_fidelity(real: pd.DataFrame, fake: pd.DataFrame, schema: Schema) -> dict:
    """Per kept column: KS (numbers, dates; missing values compared separately as a rate) or TVD."""
    out = {}
    for c in schema.kept:
        r, f = real[c.name], fake[c.name]
        if c.kind in ("categorical", "boolean"):
            out[c.name] = {"tvd": total_variation(r, f)}
            continue
        if c.kind == "datetime":
            r, f = pd.to_datetime(r, format="mixed"), pd.to_datetime(f, format="mixed")
            rv, fv = (s.dropna().astype("datetime64[ns]").astype("int64").to_numpy(float) for s in (r, f))
        else:
            rv, fv = (pd.to_numeric(s, errors="coerce").dropna().to_numpy(float) for s in (r, f))
        entry = {"ks": ks_statistic(rv, fv) if len(rv) and len(fv) else 1.0}
        if c.missing:
            entry["missing_rate_gap"] = abs(float(r.isna().mean()) - float(f.isna().mean()))
        out[c.name] = entry
    values = [v.get("ks", v.get("tvd")) for v in out.values()]
    return {"columns": out, "mean_ks_or_tvd": float(np.mean(values)) if values else None}
