"""The reversible encoding tabular synthesizers train on (Xu et al. 2019, "Modeling Tabular Data using
Conditional GAN"): a numeric column becomes its mode (one-hot, from a variational Gaussian mixture fitted to the
column) and its value normalised within that mode; a categorical column becomes one-hot; a column with
missing values gets a present/missing pair (categories: a missing category), so missingness is learned,
not dropped. `inverse` undoes it exactly (up to float rounding) and keeps outputs inside each column's
observed range, integer where the column is.

The fitted transform is plain JSON (mixture means, deviations and weights), never a pickle.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genlab.core.errors import GenlabError
from genlab.modalities.table.schema import MAX_MODES, Column, Schema


@dataclass(frozen=True)
class Span:
    """A block of encoded columns and how a generator should produce it."""

    column: str
    part: str  # value (tanh) | modes | categories | missing (softmax blocks)
    width: int

    @property
    def activation(self) -> str:
        return "tanh" if self.part == "value" else "softmax"


def fit_modes(values: np.ndarray, seed: int = 0, max_fit: int = 10_000) -> dict:
    """Means, deviations and weights of the modes of a numeric column: a Bayesian Gaussian mixture with a
    Dirichlet-process prior (it switches off components it does not need), keeping weights above 0.5%."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    x = values.astype(np.float64)
    if len(x) > max_fit:
        x = np.random.default_rng(seed).choice(x, max_fit, replace=False)
    spread = float(np.std(x))
    if len(np.unique(x)) < 2 or spread == 0:
        return {"means": [float(x.mean())], "stds": [1.0], "weights": [1.0]}
    bgm = BayesianGaussianMixture(n_components=min(MAX_MODES, len(np.unique(x))), weight_concentration_prior=1e-3,
                                  weight_concentration_prior_type="dirichlet_process", max_iter=100, n_init=1,
                                  random_state=seed)
    with warnings.catch_warnings():  # an unconverged variational fit still places the modes; no need to shout
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgm.fit(x[:, None])
    keep = bgm.weights_ > 5e-3
    stds = np.sqrt(bgm.covariances_.reshape(-1))[keep]
    return {"means": bgm.means_.reshape(-1)[keep].tolist(), "stds": np.maximum(stds, 1e-6 * spread).tolist(),
            "weights": (bgm.weights_[keep] / bgm.weights_[keep].sum()).tolist()}


def _mode_of(x: np.ndarray, modes: dict) -> np.ndarray:
    """The most probable mode of each value (vectorised Gaussian log densities)."""
    mu, sd, w = (np.asarray(modes[k]) for k in ("means", "stds", "weights"))
    log_p = np.log(w)[None] - np.log(sd)[None] - 0.5 * ((x[:, None] - mu[None]) / sd[None]) ** 2
    return log_p.argmax(1)


class TableTransformer:
    def __init__(self, schema: Schema, modes: dict[str, dict] | None = None):
        self.schema = schema
        self.modes = modes or {}

    # -- fitting and layout -------------------------------------------------------------------------
    @classmethod
    def fit(cls, df: pd.DataFrame, schema: Schema, seed: int = 0) -> TableTransformer:
        missing = [c.name for c in schema.kept if c.name not in df.columns]
        if missing:
            raise GenlabError(f"the table has no column {missing[0]!r} that the schema lists")
        modes = {c.name: fit_modes(numeric_values(df[c.name], c).dropna().to_numpy(), seed)
                 for c in schema.kept if c.kind in ("continuous", "integer", "datetime")}
        return cls(schema, modes)

    @classmethod
    def public(cls, schema: Schema) -> TableTransformer:
        """The transform of a private run (train.privacy): min-max scaling on the schema's public bounds (one mode
        per numeric column, values in [-1, 1]), nothing fitted on the rows, so it costs no privacy budget."""
        modes = {}
        for c in schema.kept:
            if c.kind in ("continuous", "integer", "datetime"):
                if c.minimum is None or c.maximum is None:
                    raise GenlabError(f"train.privacy: column {c.name!r} needs public bounds (minimum, maximum) in "
                                      "the schema")
                lo, hi = _range(c)
                modes[c.name] = {"means": [(lo + hi) / 2], "stds": [max(hi - lo, 1e-12) / 8], "weights": [1.0]}
        return cls(schema, modes)

    def spans(self) -> list[Span]:
        out = []
        for c in self.schema.kept:
            if c.kind in ("categorical", "boolean"):
                out.append(Span(c.name, "categories", len(c.categories) + (1 if c.missing else 0)))
            else:
                out += [Span(c.name, "value", 1), Span(c.name, "modes", len(self.modes[c.name]["means"]))]
                if c.missing:
                    out.append(Span(c.name, "missing", 2))
        return out

    @property
    def width(self) -> int:
        return sum(s.width for s in self.spans())

    # -- encoding --------------------------------------------------------------------------------------
    def transform(self, df: pd.DataFrame, dtype=np.float64, lenient: np.ndarray | None = None) -> np.ndarray:
        """N x width matrix (float64 by default: float32 would cost a datetime column whole seconds). `lenient`:
        rows (held-out ones: the schema comes from the training rows) where a category the schema lacks, or a
        missing value it does not allow, encodes as an all-zero block instead of an error."""
        blocks = []
        for c in self.schema.kept:
            s = df[c.name]
            if c.kind in ("categorical", "boolean"):
                blocks.append(self._one_hot(s, c, lenient))
                continue
            x = numeric_values(s, c).to_numpy(dtype=np.float64)
            absent = np.isnan(x)
            modes = self.modes[c.name]
            filled = np.where(absent, modes["means"][int(np.argmax(modes["weights"]))], x)
            k = _mode_of(filled, modes)
            mu, sd = np.asarray(modes["means"])[k], np.asarray(modes["stds"])[k]
            blocks += [((filled - mu) / (4 * sd))[:, None], np.eye(len(modes["means"]))[k]]
            if c.missing:
                blocks.append(np.stack([~absent, absent], 1).astype(np.float64))
        return np.concatenate(blocks, 1).astype(dtype)

    def _one_hot(self, s: pd.Series, c: Column, lenient: np.ndarray | None = None) -> np.ndarray:
        index = {_key(v): i for i, v in enumerate(c.categories)}
        width = len(c.categories) + (1 if c.missing else 0)
        values = s.to_numpy(dtype=object)
        absent = s.isna().to_numpy()
        found = pd.Series(values).map(index)  # one hash lookup per value; NaN when unknown (or absent)
        unknown = found.isna().to_numpy() & ~absent
        odd = unknown | (absent & (not c.missing))
        if lenient is not None:
            unknown, zero = unknown & ~lenient, odd & lenient
        else:
            zero = np.zeros(len(values), dtype=bool)
        if unknown.any():
            raise GenlabError(f"column {c.name!r}: value {values[unknown.argmax()]!r} is not one of its categories")
        if (absent & ~zero).any() and not c.missing:
            raise GenlabError(f"column {c.name!r} has a missing value the schema does not allow")
        codes = found.fillna(width - 1).to_numpy(np.int64)
        return np.vstack([np.eye(width), np.zeros((1, width))])[np.where(zero, width, codes)]

    # -- decoding --------------------------------------------------------------------------------------
    def inverse(self, matrix: np.ndarray) -> pd.DataFrame:
        """A DataFrame from an encoded (or generated) matrix: the argmax of each softmax block decides, values
        are clipped to the column's observed range, integers rounded, dates restored."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.width:
            raise GenlabError(f"expected an N x {self.width} matrix, got shape {tuple(matrix.shape)}")
        start, out = 0, {}
        parts: dict[str, dict[str, np.ndarray]] = {}
        for span in self.spans():
            parts.setdefault(span.column, {})[span.part] = matrix[:, start:start + span.width]
            start += span.width
        for c in self.schema.kept:
            p = parts[c.name]
            if c.kind in ("categorical", "boolean"):
                codes = p["categories"].argmax(1)
                values = np.array(list(c.categories) + [None], dtype=object)[codes]
                out[c.name] = pd.Series(values, dtype=object)
                continue
            modes = self.modes[c.name]
            k = p["modes"].argmax(1)
            x = p["value"][:, 0] * 4 * np.asarray(modes["stds"])[k] + np.asarray(modes["means"])[k]
            lo, hi = _range(c)
            x = np.clip(x, lo, hi)
            if c.kind == "integer":
                x = np.round(x)
            elif c.kind == "datetime":
                step = c.resolution or 1e-6
                x = np.round(x / step) * step
            if "missing" in p:
                x = np.where(p["missing"].argmax(1) == 1, np.nan, x)
            out[c.name] = _restore(x, c)
        return pd.DataFrame(out)

    # -- storage (JSON, never pickle) ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"schema": self.schema.to_yaml(), "modes": self.modes}

    @classmethod
    def from_dict(cls, data: dict) -> TableTransformer:
        try:
            return cls(Schema.from_yaml(data["schema"]), {k: dict(v) for k, v in data["modes"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise GenlabError(f"not a genlab table transform ({exc})") from None


def numeric_values(s: pd.Series, c: Column) -> pd.Series:
    """Numeric view of a column: numbers as float, datetimes as seconds since 1970 (missing: NaN). What the
    transform encodes and what the table metrics compare."""
    if c.kind == "datetime":
        stamps = pd.to_datetime(s, errors="coerce", format="mixed") if not pd.api.types.is_datetime64_any_dtype(s) \
            else s
        seconds = stamps.astype("datetime64[ns]").astype("int64").astype(np.float64) / 1e9
        return pd.Series(np.where(stamps.isna(), np.nan, seconds))
    return pd.to_numeric(s, errors="coerce").astype(np.float64)


def _range(c: Column) -> tuple[float, float]:
    if c.kind == "datetime":
        return (pd.Timestamp(c.minimum).value / 1e9, pd.Timestamp(c.maximum).value / 1e9)
    return float(c.minimum), float(c.maximum)


def _restore(x: np.ndarray, c: Column) -> pd.Series:
    if c.kind == "datetime":
        return pd.Series(pd.to_datetime(np.round(x * 1e6), unit="us", errors="coerce"))
    if c.kind == "integer":
        return pd.Series(x).astype("Int64") if np.isnan(x).any() else pd.Series(x.astype(np.int64))
    return pd.Series(x)


def _key(v):
    """Category lookup key: numpy scalars and Python numbers of equal value match."""
    return v.item() if isinstance(v, np.generic) else v
