"""Column-wise fidelity of synthetic rows to real ones: the Kolmogorov-Smirnov statistic for numbers and
dates, total-variation distance for categories (both 0 for identical distributions, 1 for disjoint ones)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genlab.core.errors import GenlabError
from genlab.modalities.table.schema import Schema
from genlab.modalities.table.transform import numeric_values


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
        rv, fv = (numeric_values(s, c).dropna().to_numpy(float) for s in (r, f))
        entry = {"ks": ks_statistic(rv, fv) if len(rv) and len(fv) else 1.0}
        if c.missing:
            entry["missing_rate_gap"] = abs(float(r.isna().mean()) - float(f.isna().mean()))
        out[c.name] = entry
    values = [v.get("ks", v.get("tvd")) for v in out.values()]
    return {"columns": out, "mean_ks_or_tvd": float(np.mean(values)) if values else None}


# -- the table report: fidelity beyond single columns, utility, privacy -------------------------------------

def features(frames: list[pd.DataFrame], schema: Schema) -> list[np.ndarray]:
    """Numeric matrices for distance and classifier metrics, encoded the same way for every frame: numbers and
    dates standardised on the first frame (missing -> 0 plus an indicator), categories one-hot."""
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for c in schema.kept:
        if c.kind in ("categorical", "boolean"):
            cats = [str(v) for v in c.categories]
            for i, f in enumerate(frames):
                values = f[c.name].astype(object).map(lambda v: None if pd.isna(v) else str(v)).to_numpy()
                blocks[i].append((values[:, None] == np.array(cats)[None]).astype(np.float64))
            continue
        cols = [numeric_values(f[c.name], c).to_numpy(float) for f in frames]
        mu, sd = np.nanmean(cols[0]), np.nanstd(cols[0]) or 1.0
        for i, x in enumerate(cols):
            z = (x - mu) / sd
            blocks[i].append(np.nan_to_num(z)[:, None])
            if c.missing:
                blocks[i].append(np.isnan(x)[:, None].astype(np.float64))
    return [np.concatenate(b, 1) for b in blocks]


def pairwise_fidelity(real: pd.DataFrame, fake: pd.DataFrame, schema: Schema, max_pairs: int = 200) -> dict:
    """Mean absolute difference of Pearson correlations between numeric columns, and mean TVD of the joint
    distribution of each pair of categorical columns."""
    numeric = [c.name for c in schema.kept if c.kind in ("continuous", "integer")]
    out: dict = {}
    if len(numeric) >= 2:
        diff = (real[numeric].astype(float).corr() - fake[numeric].astype(float).corr()).abs().to_numpy()
        out["correlation_mean_abs_difference"] = float(np.nanmean(diff[np.triu_indices(len(numeric), 1)]))
    cats = [c.name for c in schema.kept if c.kind in ("categorical", "boolean")]
    pairs = [(a, b) for i, a in enumerate(cats) for b in cats[i + 1:]][:max_pairs]
    if pairs:
        tvds = [total_variation(real[a].astype(str) + "|" + real[b].astype(str),
                                fake[a].astype(str) + "|" + fake[b].astype(str)) for a, b in pairs]
        out["contingency_mean_tvd"] = float(np.mean(tvds))
    return out


def classifier_two_sample_auc(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a gradient-boosted classifier telling real rows from synthetic ones (equal
    numbers of each): 0.5 means it cannot, 1.0 means every row gives itself away."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_predict

    n = min(len(real), len(fake))
    rng = np.random.default_rng(seed)
    x = np.concatenate([real[rng.choice(len(real), n, replace=False)], fake[rng.choice(len(fake), n, replace=False)]])
    y = np.r_[np.zeros(n), np.ones(n)]
    from sklearn.metrics import roc_auc_score

    p = cross_val_predict(HistGradientBoostingClassifier(max_iter=100, random_state=seed), x, y, cv=5,
                          method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def utility(train: pd.DataFrame, fake: pd.DataFrame, test: pd.DataFrame, schema: Schema, target: str,
            seed: int = 0, positive: str | None = None, top_k: int | None = None) -> dict:
    """Train on synthetic, test on real (TSTR) against train on real, test on real (TRTR), same model
    (gradient boosting), same real test rows: accuracy and macro F1 for a categorical target, R^2 otherwise. A
    two-class target also gets the ROC AUC of the `positive` class (default: the rarer one in the training rows)
    and, with `top_k`, the number of positives among the k test rows each model scores highest (ties broken at
    random: a model that never saw a positive ranks like chance)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, f1_score, r2_score, roc_auc_score

    column = schema[target]
    if column.drop:
        raise ValueError(f"target {target!r} is dropped from the model (flags: {', '.join(column.flags)})")
    inputs = Schema([c for c in schema.kept if c.name != target], schema.rows)
    x_train, x_fake, x_test = features([train, fake, test], inputs)
    classify = column.kind in ("categorical", "boolean")

    def label(frame):
        y = frame[target]
        return y.astype(str).to_numpy() if classify else pd.to_numeric(y, errors="coerce").to_numpy(float)

    y_train, y_fake, y_test = label(train), label(fake), label(test)
    test_keep = ~pd.isna(y_test)
    truth = y_test[test_keep]
    binary = classify and len(set(y_train[~pd.isna(y_train)])) == 2
    if binary:
        counts = pd.Series(y_train).value_counts()
        positive = str(positive) if positive is not None else str(counts.index[-1])
        if positive not in counts.index:
            raise GenlabError(f"eval.positive {positive!r} is not a class of {target!r} "
                              f"(classes: {', '.join(map(str, counts.index))})")
        is_positive = truth == positive
    if top_k is not None and not binary:
        raise GenlabError(f"eval.top_k needs a two-class target; {target!r} is not one")
    if top_k is not None and not 0 < top_k <= len(truth):
        raise GenlabError(f"eval.top_k must be between 1 and the {len(truth)} labelled test rows, got {top_k}")
    scores = {}
    for name, x, y in (("real", x_train, y_train), ("synthetic", x_fake, y_fake)):
        keep = ~pd.isna(y)
        if classify:
            model = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(x[keep], y[keep])
            pred = model.predict(x_test[test_keep])
            scores[name] = {"accuracy": float(accuracy_score(truth, pred)),
                            "macro_f1": float(f1_score(truth, pred, average="macro"))}
            if binary:
                classes = list(model.classes_)
                score = (model.predict_proba(x_test[test_keep])[:, classes.index(positive)] if positive in classes
                         else np.zeros(len(truth)))
                scores[name]["roc_auc"] = float(roc_auc_score(is_positive, score)) if 0 < is_positive.sum() < len(
                    truth) else None
                if top_k is not None:
                    tie_break = np.random.default_rng(seed).permutation(len(score))
                    order = np.lexsort((tie_break, -score))[:top_k]
                    scores[name][f"positives_in_top_{top_k}"] = int(is_positive[order].sum())
        else:
            model = HistGradientBoostingRegressor(max_iter=200, random_state=seed).fit(x[keep], y[keep])
            scores[name] = {"r2": float(r2_score(truth, model.predict(x_test[test_keep])))}
    key = "accuracy" if classify else "r2"
    out = {"target": target, "task": "classification" if classify else "regression",
           "train_real_test_real": scores["real"], "train_synthetic_test_real": scores["synthetic"],
           "tstr_over_trtr": scores["synthetic"][key] / scores["real"][key] if scores["real"][key] else None}
    if binary:
        out["positive"] = positive
        if top_k is not None:
            out["top_k"] = {"k": top_k, "test_positives": int(is_positive.sum()), "test_rows": len(truth),
                            "chance": round(top_k * float(is_positive.mean()), 1)}
    return out


def privacy(train: np.ndarray, holdout: np.ndarray, fake: np.ndarray) -> dict:
    """Distance to closest record (DCR) of synthetic rows and of real holdout rows to the training rows, the
    nearest-neighbour distance ratio of synthetic rows, and a membership-inference attack: guess "member" for
    rows close to a synthetic row; its ROC AUC on training vs holdout rows (0.5: no signal)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=2).fit(train)
    fake_d, _ = index.kneighbors(fake)
    hold_d, _ = index.kneighbors(holdout, n_neighbors=1)
    p5_fake, p5_hold = float(np.percentile(fake_d[:, 0], 5)), float(np.percentile(hold_d[:, 0], 5))
    nndr = fake_d[:, 0] / np.maximum(fake_d[:, 1], 1e-12)
    to_fake = NearestNeighbors(n_neighbors=1).fit(fake)
    n = min(len(train), len(holdout))
    rng = np.random.default_rng(0)
    members = train[rng.choice(len(train), n, replace=False)]
    others = holdout[rng.choice(len(holdout), n, replace=False)]
    d_members, d_others = to_fake.kneighbors(members)[0][:, 0], to_fake.kneighbors(others)[0][:, 0]
    auc = float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], -np.r_[d_members, d_others]))
    return {"dcr_synthetic_p5": p5_fake, "dcr_holdout_p5": p5_hold,
            "dcr_p5_ratio": p5_fake / p5_hold if p5_hold > 0 else None,
            "synthetic_copies_of_training_rows": int((fake_d[:, 0] < 1e-9).sum()),
            "nndr_synthetic_median": float(np.median(nndr)),
            "membership_inference_auc": auc,
            "rows": {"train": len(train), "holdout": len(holdout), "synthetic": len(fake)}}
