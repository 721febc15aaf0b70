"""Audit a table before training on it: missing values per column (and what counted as missing), exact and
near-duplicate rows, constant and id-like columns, outliers per numeric column, rare categories, and target
leakage (a column that predicts eval.target almost perfectly by itself, out of fold).

Every finding names its columns; findings about rows name them as 1-based data row numbers: row 1 is the first
row under the header (line 2 of a CSV file without line breaks inside cells), in file order. The table is
read by the training loader (tables.io), so what is missing here is what training sees as missing.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from genlab.core.errors import GenlabError
from genlab.modalities.table.io import LoadedTable
from genlab.modalities.table.schema import Schema, table_schema
from genlab.modalities.table.transform import numeric_values

FENCE = 3.0  # outliers: outside Q1 - 3 IQR .. Q3 + 3 IQR (Tukey's far fences)
RARE_SHARE = 0.005  # a category held by at most this share of rows (and at least by one row, at most 1 row
#                     when the table is small) is rare
LEAK_SCORE = 0.95  # out-of-fold balanced accuracy (categorical target) or R^2 (numeric target) of one column
LEAK_BINS, LEAK_FOLDS = 20, 5  # a numeric column predicts through its quantile bins; folds of the check
NEAR_MIN_COLUMNS = 4  # rows agreeing on all but one column are near duplicates only when there are this many


def audit_table(table: LoadedTable, target: str | None = None, listed: int | None = 50, seed: int = 0) -> dict:
    """All findings for one table; lists hold at most `listed` rows or entries (None: all; counts are
    complete)."""
    df = table.frame
    if target is not None and target not in df.columns:
        raise GenlabError(f"eval.target {target!r} is not a column of {table.source} "
                          f"(columns: {', '.join(df.columns[:20])})")
    schema = table_schema(table)
    exact, later_copies = exact_duplicates(df)
    near = near_duplicates(df, schema, later_copies)
    outliers = numeric_outliers(df, schema)
    rare = rare_categories(df, schema)
    missing = [{"column": c.name, "count": int(df[c.name].isna().sum()), "fraction": c.missing,
                "read_as_missing": c.read_as_missing, "rows": _rows(df[c.name].isna(), listed)}
               for c in schema.columns if c.missing]
    constant = [{"column": c.name, "value": c.categories[0] if c.categories else c.minimum,
                 "missing": c.missing} for c in schema.columns if "constant" in c.flags]
    id_like = [{"column": c.name, "kind": c.kind, "distinct": c.distinct} for c in schema.columns
               if "id-like" in c.flags]

    def cut(items: list) -> list:
        return items[:listed]

    report = {
        "source": table.source, "rows": int(len(df)), "columns": int(df.shape[1]),
        "row_numbers": "1-based data rows: row 1 is the first row under the header",
        "missing_values": {"cells": int(sum(m["count"] for m in missing)), "columns": missing,
                           "rule": "empty cells" + (f" and {table.missing_values} (data.missing_values)"
                                                    if table.missing_values else " only")},
        "exact_duplicates": {"groups": len(exact), "extra_copies": len(later_copies),
                             "first_groups": cut([[i + 1 for i in g] for g in exact])},
        "near_duplicates": {"pairs": len(near), "first_pairs": cut(near),
                            "method": f"rows equal after normalising text (case, spaces) and numbers (6 significant "
                                      f"digits), or equal in all but one column (tables of >= {NEAR_MIN_COLUMNS} "
                                      "compared columns); id-like columns are not compared; exact copies excluded"},
        "constant_columns": constant,
        "id_like_columns": id_like,
        "outliers": {"count": sum(o["count"] for o in outliers), "columns": [{**o, "rows": cut(o["rows"]),
                                                                              "values": cut(o["values"])}
                                                                             for o in outliers],
                     "method": f"values outside Q1 - {FENCE:g} IQR .. Q3 + {FENCE:g} IQR per numeric column "
                               "(columns with IQR 0 are skipped); most extreme first"},
        "rare_categories": {"count": len(rare), "categories": cut([{**r, "rows": cut(r["rows"])} for r in rare]),
                            "method": f"categories held by at most {RARE_SHARE:.1%} of rows (at least 1 row) in "
                                      "categorical columns that are not id-like or high-cardinality"},
        "target_leakage": ({"skipped": "set eval.target to the column a downstream model predicts"} if target is None
                           else target_leakage(df, schema, target, listed, seed)),
    }
    return report


def _rows(mask, listed: int | None = None) -> list[int]:
    return (np.flatnonzero(np.asarray(mask)) + 1).tolist()[:listed]


def exact_duplicates(df: pd.DataFrame) -> tuple[list[list[int]], set[int]]:
    """Groups of 0-based row positions whose every cell is equal (content hash; missing equals missing), and
    the positions after the first of each group."""
    return _groups(pd.util.hash_pandas_object(df, index=False).to_numpy())


def _groups(keys: np.ndarray, ids: np.ndarray | None = None) -> tuple[list[list[int]], set[int]]:
    """Groups of ids (default: positions) sharing a key, in order, and the ids after the first of each."""
    found: dict = defaultdict(list)
    for i, key in zip(range(len(keys)) if ids is None else ids.tolist(), keys.tolist(), strict=True):
        found[key].append(i)
    groups = [g for g in found.values() if len(g) > 1]
    return groups, {i for g in groups for i in g[1:]}


def near_duplicates(df: pd.DataFrame, schema: Schema, skip: set[int]) -> list[dict]:
    """Pairs of rows (1-based) that are equal after normalising, or equal in all but one compared column, each
    with the columns they differ in (id-like ones included: a row copied under a new id is a near duplicate).
    Each group is reported as its first row paired with each other row; rows in `skip` (later exact copies)
    are left out. Column hashes are combined linearly, so leaving one column out is one subtraction per row."""
    names = [c.name for c in schema.columns if "id-like" not in c.flags]
    if not names:
        return []
    hashes = np.stack([pd.util.hash_pandas_object(_normalised(df[n]), index=False).to_numpy() for n in names], 1)
    weights = np.random.default_rng(0).integers(1, 2**63, len(names), dtype=np.uint64) | np.uint64(1)
    mixed = hashes * weights[None]  # uint64 arithmetic wraps: sums are row hashes mod 2^64
    whole = mixed.sum(1, dtype=np.uint64)
    candidates = [whole] + ([whole - mixed[:, j] for j in range(len(names))] if len(names) >= NEAR_MIN_COLUMNS
                            else [])
    ids = np.array([i for i in range(len(df)) if i not in skip], dtype=np.int64)
    values = df.astype(object).where(df.notna(), None).to_numpy()
    pairs: dict[tuple[int, int], list[str]] = {}
    for keys in candidates:
        for g in _groups(keys[ids], ids)[0]:
            for b in g[1:]:
                if (g[0], b) not in pairs:
                    pairs[(g[0], b)] = [str(df.columns[j]) for j in range(df.shape[1])
                                        if values[g[0], j] != values[b, j]]
    return [{"rows": [a + 1, b + 1], "differ_in": cols} for (a, b), cols in sorted(pairs.items()) if cols]


def _normalised(s: pd.Series) -> pd.Series:
    """Text case-folded with spaces collapsed; numbers to 6 significant digits; what near duplicates compare."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        x = s.to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = 10.0 ** (5 - np.floor(np.log10(np.abs(x))))
            rounded = np.round(x * scale) / scale
        return pd.Series(np.where(np.isfinite(rounded), rounded, x))
    if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
        return s.astype(object).map(lambda v: " ".join(v.casefold().split()) if isinstance(v, str) else v)
    return s


def numeric_outliers(df: pd.DataFrame, schema: Schema) -> list[dict]:
    """Per numeric column (continuous, integer; not id-like), the rows outside the far fences, most extreme
    first, with their values."""
    out = []
    for c in schema.columns:
        if c.kind not in ("continuous", "integer") or "id-like" in c.flags:
            continue
        x = numeric_values(df[c.name], c).to_numpy(dtype=np.float64)
        present = x[~np.isnan(x)]
        if len(present) < 4:
            continue
        q1, q3 = np.percentile(present, [25, 75])
        if q3 == q1:
            continue
        low, high = q1 - FENCE * (q3 - q1), q3 + FENCE * (q3 - q1)
        with np.errstate(invalid="ignore"):
            outside = np.flatnonzero((x < low) | (x > high))
        if len(outside):
            outside = outside[np.argsort(-np.maximum(low - x[outside], x[outside] - high))]
            out.append({"column": c.name, "count": len(outside), "fences": [float(low), float(high)],
                        "rows": (outside + 1).tolist(), "values": [_plain(v) for v in df[c.name].iloc[outside]]})
    return out


def rare_categories(df: pd.DataFrame, schema: Schema) -> list[dict]:
    """Categories held by at most RARE_SHARE of the rows (a synthesizer rarely learns them, and may copy the
    rows that hold them), with those rows."""
    limit = max(1, int(RARE_SHARE * len(df)))
    out = []
    for c in schema.columns:
        if c.kind not in ("categorical", "boolean") or {"id-like", "high-cardinality", "constant"} & set(c.flags):
            continue
        counts = df[c.name].value_counts()
        for value, count in counts[counts <= limit].items():
            out.append({"column": c.name, "value": _plain(value), "count": int(count),
                        "rows": _rows(df[c.name] == value)})
    return out


def target_leakage(df: pd.DataFrame, schema: Schema, target: str, listed: int | None = 50, seed: int = 0) -> dict:
    """How well each column predicts `target` by itself, out of fold: a lookup of the target's most common value
    (categorical target; scored by balanced accuracy) or mean (numeric target; scored by R^2) per value of the
    column (numeric columns: per quantile bin). A column scoring >= LEAK_SCORE leaks the target: it is likely
    computed from it or recorded after it. The rows it gets wrong are listed."""
    kind = schema[target].kind
    present = df[target].notna().to_numpy()
    frame = df[present].reset_index(drop=True)
    rows = np.flatnonzero(present) + 1
    classify = kind in ("categorical", "boolean")
    if classify:
        y, classes = pd.factorize(frame[target])
    else:
        y = numeric_values(frame[target], schema[target]).to_numpy(dtype=np.float64)
    folds = np.random.default_rng(seed).permutation(len(frame)) % LEAK_FOLDS
    scores, leaks = [], []
    for c in schema.columns:
        if c.name == target:
            continue
        key = _lookup_key(frame[c.name], c)
        predicted = _out_of_fold(key, y, folds, classify)
        score = _balanced_accuracy(y, predicted) if classify else _r2(y, predicted)
        scores.append({"column": c.name, "score": round(score, 4)})
        if score >= LEAK_SCORE:
            wrong = np.flatnonzero(predicted != y) if classify else np.argsort(-np.abs(predicted - y))[:listed]
            leaks.append({"column": c.name, "score": round(score, 4), "wrong_rows": rows[wrong].tolist()[:listed]})
    scores.sort(key=lambda s: -s["score"])
    return {"target": target, "task": "classification" if classify else "regression",
            "score": "balanced accuracy" if classify else "R^2", "threshold": LEAK_SCORE,
            "leaking_columns": leaks, "top_scores": scores[:10],
            "method": f"{LEAK_FOLDS}-fold out-of-fold lookup of the target per value of one column (numeric "
                      f"columns: per {LEAK_BINS} quantile bins; missing is a value); unseen values predict the "
                      "overall most common value or mean"}


def _lookup_key(s: pd.Series, c) -> np.ndarray:
    """Integer codes the lookup predicts from: the value, or the quantile bin of numbers and dates; missing is
    its own code."""
    if c.kind in ("continuous", "integer", "datetime"):
        x = numeric_values(s, c)
        bins = pd.qcut(x.rank(method="first"), min(LEAK_BINS, max(1, x.notna().sum())), labels=False) \
            if x.notna().any() else x
        return np.where(x.isna(), -1, np.nan_to_num(bins.to_numpy(dtype=np.float64), nan=-1)).astype(np.int64)
    return pd.factorize(s.astype(object), use_na_sentinel=True)[0].astype(np.int64)


def _out_of_fold(key: np.ndarray, y: np.ndarray, folds: np.ndarray, classify: bool) -> np.ndarray:
    codes = key - key.min()
    width = int(codes.max()) + 1
    predicted = np.empty(len(y), dtype=y.dtype if classify else np.float64)
    for f in range(LEAK_FOLDS):
        train, test = folds != f, folds == f
        if classify:
            counts = np.zeros((width, int(y.max()) + 1))
            np.add.at(counts, (codes[train], y[train]), 1)
            fallback = int(np.bincount(y[train]).argmax())
            seen = counts[codes[test]].sum(1) > 0
            predicted[test] = np.where(seen, counts[codes[test]].argmax(1), fallback)
        else:
            total = np.bincount(codes[train], y[train], minlength=width)
            count = np.bincount(codes[train], minlength=width)
            mean = y[train].mean()
            predicted[test] = np.where(count[codes[test]] > 0, total[codes[test]] / np.maximum(count[codes[test]], 1),
                                       mean)
    return predicted


def _balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[y == k] == k) for k in np.unique(y)]))


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    spread = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / spread if spread > 0 else 0.0


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def audit_summary(report: dict) -> dict:
    """The headline counts `genlab data audit` prints."""
    leak = report["target_leakage"]
    return {"rows": report["rows"], "columns": report["columns"],
            "missing cells": report["missing_values"]["cells"],
            "exact duplicate copies": report["exact_duplicates"]["extra_copies"],
            "near-duplicate pairs": report["near_duplicates"]["pairs"],
            "constant columns": [c["column"] for c in report["constant_columns"]],
            "id-like columns": [c["column"] for c in report["id_like_columns"]],
            "outliers": {o["column"]: o["count"] for o in report["outliers"]["columns"]},
            "rare categories": report["rare_categories"]["count"],
            "target leakage": leak.get("skipped") or [c["column"] for c in leak["leaking_columns"]]}


def write_table_audit(report: dict, out) -> None:
    """audit.json (everything) and audit.html (each finding, its count and first rows / columns)."""
    from genlab.core.html import write_findings

    leak = report["target_leakage"]
    rows = [("Rows", report["rows"], ""),
            ("Missing cells", report["missing_values"]["cells"],
             [{"column": m["column"], "count": m["count"], "read_as_missing": m["read_as_missing"],
               "rows": m["rows"][:10]} for m in report["missing_values"]["columns"]]),
            ("Exact duplicate copies", report["exact_duplicates"]["extra_copies"],
             report["exact_duplicates"]["first_groups"][:20]),
            ("Near-duplicate pairs", report["near_duplicates"]["pairs"], report["near_duplicates"]["first_pairs"][:20]),
            ("Constant columns", len(report["constant_columns"]), report["constant_columns"]),
            ("Id-like columns", len(report["id_like_columns"]), report["id_like_columns"]),
            ("Outliers", report["outliers"]["count"],
             {o["column"]: o["rows"][:10] for o in report["outliers"]["columns"]}),
            ("Rare categories", report["rare_categories"]["count"],
             [{k: r[k] for k in ("column", "value", "rows")} for r in report["rare_categories"]["categories"][:20]]),
            ("Target leakage", len(leak.get("leaking_columns", [])),
             leak.get("skipped") or [{"column": c["column"], "score": c["score"], "wrong_rows": c["wrong_rows"][:10]}
                                     for c in leak["leaking_columns"]])]
    write_findings(out, report, rows, "Table audit", f"{report['source']}; {report['row_numbers']}")
