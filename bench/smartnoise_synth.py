"""smartnoise-synth's differentially private table synthesizers (MST, DP-CTGAN; AIM and PATE-CTGAN too) on the
rows genlab trains on, for a side-by-side comparison with genlab's DP synthesizers. smartnoise-synth lives in its
OWN venv, never a genlab dependency, and this script does not import genlab:

    python3 -m venv /work/snvenv
    /work/snvenv/bin/pip install torch==2.13.0                      # first: the CPU build (pip finds it on disk)
    /work/snvenv/bin/pip install smartnoise-synth==1.0.8 pandas numpy packaging pyreadr scikit-learn
    /work/snvenv/bin/pip show torch                                  # must still say 2.13.0 (+cpu)

    OMP_NUM_THREADS=1 taskset -c 1 /work/snvenv/bin/python bench/smartnoise_synth.py --data DIR \\
        --synths mst,dpctgan --epsilons 1,3,8 --seeds 0,1,2 [--rows N] [--delta 1e-5] [--bins 20] \\
        [--dpctgan-epochs 300] [--dpctgan-sigma 5] [--dpctgan-batch 500]

`packaging` is an undeclared dependency of snsynth.pytorch (DP-CTGAN / PATE-CTGAN fail to import without it).
pip freeze of /work/snvenv (Python 3.11.7) when this was written:

    smartnoise-synth==1.0.8  smartnoise-sql==1.0.10  opacus==0.14.0  torch==2.13.0+cpu  mbi==1.1.0
    jax==0.10.2  jaxlib==0.10.2  opendp==0.14.2  pac-synth==0.0.8  numpy==2.4.6  pandas==2.3.3  scipy==1.17.1
    scikit-learn==1.9.1  networkx==3.6.1  disjoint-set==0.9.0  Faker==40.63.0  pyreadr==0.5.8  packaging==26.4
    absl-py==2.5.1 antlr4-python3-runtime==4.9.3 attrs==26.1.0 chex==0.1.92 cloudpickle==3.1.3 Deprecated==1.3.1
    filelock==4.3.1 fsspec==2026.9.0 graphviz==0.21 Jinja2==3.1.6 joblib==1.6.0 MarkupSafe==3.0.4
    ml_dtypes==0.7.0 mpmath==1.3.0 narwhals==2.29.0 opt_einsum==3.4.0 optax==0.2.8 python-dateutil==4.0.0
    pytz==2026.6 PyYAML==6.0.4 SQLAlchemy==2.1.9 sympy==1.14.0 threadpoolctl==3.8.0 toolz==1.2.0
    typing_extensions==4.16.0 tzdata==2026.6 wrapt==2.5.2

DIR holds train.csv (the private rows) and schema.json ({"columns": [genlab schema Column fields]}). The bounds and
categories in schema.json are PUBLIC, so smartnoise gets them and spends no budget on preprocessing: the
TableTransformer is built here column by column and fitted on a frame made from the schema alone (never on
train.csv), so it is complete before the synthesizer sees the data and `preprocessor_eps=0`:

  * categorical / boolean: the values are mapped to their index in the schema's categories (plus one "missing"
    index when the column has missing values) and a LabelTransformer (MST, AIM) or LabelTransformer -> OneHotEncoder
    (DP-CTGAN, PATE-CTGAN) is fitted on those indices 0..K-1;
  * continuous / integer / datetime (datetimes as epoch seconds): BinTransformer(bins=20, lower, upper) for the
    marginal-based MST/AIM (integers with fewer than 20 values in range get one bin per value), MinMaxTransformer
    (lower, upper) to [-1, 1] for the GANs; values come back as bin midpoints (MST/AIM) or rescaled (GANs),
    integers rounded, all clipped to the bounds;
  * dropped columns are skipped (the output has the kept columns, in train.csv's order, with its dtypes).

Each fit checks that nothing was spent on preprocessing: the transformer's odometer reports (0, 0), no column
transformer needs epsilon or recorded budget_spent, and the synthesizer's epsilon is unchanged after fit (the
library subtracts any preprocessing spend from it). Every (synth, epsilon, seed) writes
DIR/sn-{synth}-eps{e}-seed{s}.csv and appends {synth, epsilon, seed, delta, fit_seconds, sample_seconds, rows,
spent_epsilon, notes} to DIR/sn-runs.json.

Behaviour that matters for a fair comparison (smartnoise-synth 1.0.8):

  * Seeds: random, numpy and torch are seeded per run, but the library cannot be made reproducible: MST/AIM draw
    their Gaussian measurement noise from OpenDP (its own OS-seeded RNG); opacus 0.14's PrivacyEngine (secure_rng off)
    re-seeds torch's GLOBAL generator from os.urandom when DP-CTGAN builds it, so the DP noise, latent draws and
    Gumbel noise are unseeded; DP-CTGAN's and PATE-CTGAN's Discriminator calls torch.manual_seed(0) in __init__ (its
    initial weights are the same for every seed). The seed only steers numpy-side choices (MST's exponential
    mechanism, mbi's sampling, CTGAN's conditional sampler) and DP-CTGAN's generator initialisation.
  * MST: (epsilon, delta) -> zCDP rho by OpenDP's conversion (cdp_rho), split rho/3 one-way marginals, rho/3 tree
    selection (exponential mechanism), rho/3 two-way marginals; the row count is used as public (known_total).
    Library default delta 1e-9 (this script passes --delta). It does not report what it spent; spent_epsilon is the
    epsilon it was given, by construction.
  * DP-CTGAN: opacus 0.14 RDP accountant (sampled Gaussian, q = batch_size / rows, noise multiplier sigma=5,
    per-layer clipping at 1.0), with the loose RDP->(eps, delta) conversion; only the discriminator is privatised;
    two optimizer steps (fake batch, real batch) per iteration are both counted. Library default delta is
    1 / (n * sqrt(n)) (this script passes --delta). The library checks the budget at the START of each epoch and
    stops only once it has been exceeded, so with the default epochs it overspends by up to one epoch; this script
    therefore caps the epochs (default 300) at the largest number whose spend stays within epsilon (same accountant)
    and reports the engine's own get_privacy_spent(delta) after training as spent_epsilon. Not covered by the
    accountant: the conditional sampler picks rows by category with the exact (noise-free) category frequencies of
    the private data (and the same frequencies drive sample-time conditional vectors), and rows are not Poisson- or
    uniformly subsampled as the accountant assumes (opacus itself warns "The returned privacy budget will be
    incorrect" for batch_size/sample_size).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CUBE = ("mst", "aim")  # marginal-based: categorical inputs only
GAN = ("dpctgan", "patectgan")
DPCTGAN_SIGMA, DPCTGAN_BATCH, DPCTGAN_EPOCHS = 5.0, 500, 300  # the library's defaults


def _key(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT


class Codec:
    """One kept column: private value <-> what the smartnoise transformer sees, from the public schema only."""

    def __init__(self, col: dict, train: pd.Series, bins: int):
        self.name, self.kind = col["name"], col["kind"]
        self.nullable = bool(col.get("missing")) or bool(train.isna().any())
        self.dtype = train.dtype
        if self.kind in ("categorical", "boolean"):
            self.categories = list(col.get("categories") or [])
            if not self.categories:
                raise SystemExit(f"column {self.name!r}: no categories in schema.json")
            self.index = {_key(c): i for i, c in enumerate(self.categories)}
            self.size = len(self.categories) + (1 if self.nullable else 0)  # last index: missing
            unknown = sorted({_key(v) for v in train.dropna().unique()} - set(self.index))
            if unknown:
                raise SystemExit(f"column {self.name!r}: values {unknown[:5]} are not in the schema's categories")
        else:
            lo, hi = col.get("minimum"), col.get("maximum")
            if lo is None or hi is None:
                raise SystemExit(f"column {self.name!r}: no minimum/maximum in schema.json")
            if self.kind == "datetime":
                lo, hi = (pd.Timestamp(x).timestamp() for x in (lo, hi))
                self.resolution = col.get("resolution")
            self.lo, self.hi = float(lo), float(hi)
            if self.hi <= self.lo:
                self.hi = self.lo + 1.0
            self.bins = bins
            if self.kind == "integer":
                self.bins = max(2, min(bins, int(round(self.hi - self.lo)) + 1))

    @property
    def categorical(self) -> bool:
        return self.kind in ("categorical", "boolean")

    def encode(self, s: pd.Series) -> pd.Series:
        if self.categorical:
            miss = len(self.categories)
            return s.map(lambda v: miss if _missing(v) else self.index[_key(v)]).astype("int64")
        if self.kind == "datetime":
            t = pd.to_datetime(s, errors="coerce", format="mixed")
            out = pd.Series(np.nan, index=s.index)
            ok = t.notna()
            out[ok] = (t[ok].astype("datetime64[us]").astype("int64") / 1e6).to_numpy()
            return out.astype("float64")
        return pd.to_numeric(s, errors="coerce").astype("float64")

    def public_values(self, n: int) -> list:
        """n values that cover the column's public domain (what the transformer is fitted on)."""
        if self.categorical:
            return [i % self.size for i in range(n)]
        return [(self.lo if i % 2 == 0 else self.hi) for i in range(n)]

    def transformer(self, style: str):
        from snsynth.transform import (
            BinTransformer,
            ChainTransformer,
            LabelTransformer,
            MinMaxTransformer,
            OneHotEncoder,
        )

        if self.categorical:
            label = LabelTransformer(nullable=False)
            return label if style == "cube" else ChainTransformer([label, OneHotEncoder()])
        if style == "cube":
            return BinTransformer(bins=self.bins, lower=self.lo, upper=self.hi, nullable=self.nullable)
        return MinMaxTransformer(lower=self.lo, upper=self.hi, negative=True, nullable=self.nullable)

    def decode(self, s: pd.Series) -> pd.Series:
        if self.categorical:
            cats = self.categories

            def back(v):
                if _missing(v):
                    return None
                i = int(v)
                return cats[i] if 0 <= i < len(cats) else None

            out = s.map(back)
            if pd.api.types.is_bool_dtype(self.dtype) and out.notna().all():
                return out.map(lambda v: str(v).lower() in ("true", "1", "yes")).astype(bool)
            if pd.api.types.is_integer_dtype(self.dtype) and out.notna().all():
                return out.astype("int64")
            if pd.api.types.is_float_dtype(self.dtype):
                return pd.to_numeric(out, errors="coerce").astype("float64")
            return out
        x = pd.to_numeric(s, errors="coerce").astype("float64").clip(self.lo, self.hi)
        if self.kind == "datetime":
            if self.resolution:
                x = (x / self.resolution).round() * self.resolution
            t = pd.to_datetime(x, unit="s")
            return t.astype(str).where(t.notna(), None)
        if self.kind == "integer" or pd.api.types.is_integer_dtype(self.dtype):
            x = x.round()
            if x.notna().all() and pd.api.types.is_integer_dtype(self.dtype):
                return x.astype("int64")
        return x


def build_transformer(codecs: list[Codec], style: str):
    """The TableTransformer, fitted on a frame made from the public schema only (never on train.csv)."""
    from snsynth.transform.table import TableTransformer

    tt = TableTransformer([c.transformer(style) for c in codecs])
    n = max(2, max((c.size for c in codecs if c.categorical), default=2))
    public = pd.DataFrame({c.name: c.public_values(n) for c in codecs})
    tt.fit(public, epsilon=0.0)
    return tt


def check_no_preprocessing_spend(tt) -> dict:
    spent = tuple(float(x) for x in tt.odometer.spent)
    column_spend = [getattr(t, "budget_spent", []) for t in tt.transformers] + \
        [getattr(s, "budget_spent", []) for t in tt.transformers for s in getattr(t, "transformers", [])]
    ok = tt.fit_complete and not tt.needs_epsilon and spent == (0.0, 0.0) and not any(column_spend)
    if not ok:
        raise SystemExit(f"transformer would spend budget: fit_complete={tt.fit_complete} "
                         f"needs_epsilon={tt.needs_epsilon} odometer={spent} column budget_spent={column_spend}")
    return {"odometer_spent": list(spent), "fit_complete": tt.fit_complete, "needs_epsilon": tt.needs_epsilon}


def dpctgan_epochs_within(epsilon: float, delta: float, rows: int, max_epochs: int, sigma: float = DPCTGAN_SIGMA,
                          batch: int = DPCTGAN_BATCH) -> tuple[int, float]:
    """The most epochs (<= max_epochs) whose opacus-0.14 RDP spend stays within epsilon, and that spend."""
    from opacus import privacy_analysis

    alphas = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))  # DPCTGAN's own orders
    q = batch / rows
    steps_per_epoch = 2 * max(rows // batch, 1)  # optimizerD.step() on the fake and on the real batch

    def spend(epochs):
        rdp = privacy_analysis.compute_rdp(q, sigma, steps_per_epoch * epochs, alphas)
        return float(privacy_analysis.get_privacy_spent(alphas, rdp, delta)[0])

    best, lo, hi = 0, 1, max_epochs
    while lo <= hi:  # spend grows with epochs
        mid = (lo + hi) // 2
        if spend(mid) <= epsilon:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best, (spend(best) if best else 0.0)


def make_synth(name: str, epsilon: float, delta: float, epochs: int | None, sigma: float = DPCTGAN_SIGMA,
               batch: int = DPCTGAN_BATCH):
    from snsynth import Synthesizer

    if name in CUBE:
        return Synthesizer.create(name, epsilon=epsilon, delta=delta, verbose=False)
    if name == "dpctgan":
        return Synthesizer.create(name, epsilon=epsilon, delta=delta, epochs=epochs, sigma=sigma,
                                  batch_size=batch, verbose=False, cuda=False)
    if name == "patectgan":
        return Synthesizer.create(name, epsilon=epsilon, delta=delta, verbose=False, cuda=False)
    raise SystemExit(f"unknown synth {name!r}; choose from {', '.join(CUBE + GAN)}")


class EngineCapture:
    """Keeps the opacus PrivacyEngine DP-CTGAN builds (a local there) to read its final spend; sources untouched."""

    def __init__(self):
        self.engines = []

    def __enter__(self):
        import opacus

        self.opacus, self.original = opacus, opacus.PrivacyEngine
        engines = self.engines

        class Capturing(self.original):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                engines.append(self)

        opacus.PrivacyEngine = Capturing
        return self

    def __exit__(self, *exc):
        self.opacus.PrivacyEngine = self.original


def run_one(name, epsilon, seed, codecs, enc, n_rows, args, out_dir) -> dict:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    style = "cube" if name in CUBE else "gan"
    tt = build_transformer(codecs, style)
    pre = check_no_preprocessing_spend(tt)
    notes = [f"transformer fitted on the public schema only: {pre}"]
    epochs, planned = None, None
    if name == "dpctgan":
        epochs, planned = dpctgan_epochs_within(epsilon, args.delta, len(enc), args.dpctgan_epochs,
                                                args.dpctgan_sigma, args.dpctgan_batch)
        if epochs == 0:
            raise SystemExit(f"dpctgan: one epoch already spends more than epsilon={epsilon} "
                             f"(sigma={args.dpctgan_sigma}, batch={args.dpctgan_batch}, rows={len(enc)})")
        notes.append(f"epochs capped at {epochs} (of {args.dpctgan_epochs}) so the RDP spend "
                     f"{planned:.4f} <= epsilon")
    synth = make_synth(name, epsilon, args.delta, epochs, args.dpctgan_sigma, args.dpctgan_batch)
    eps_before = float(synth.epsilon)
    with warnings.catch_warnings(), EngineCapture() as cap:
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        synth.fit(enc, transformer=tt, preprocessor_eps=0.0)
        fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        fake = synth.sample(n_rows)
        sample_seconds = time.perf_counter() - t0
    if float(synth.epsilon) != eps_before or tuple(float(x) for x in tt.odometer.spent) != (0.0, 0.0):
        raise SystemExit(f"{name}: preprocessing spent budget (epsilon {eps_before} -> {synth.epsilon}, "
                         f"odometer {tt.odometer.spent})")
    spent = None
    if name == "dpctgan" and cap.engines:
        engine = cap.engines[-1]
        spent = float(engine.get_privacy_spent(args.delta)[0])
        notes.append(f"opacus steps={engine.steps} epochs_run={len(synth.epsilon_list)} "
                     f"sample_rate={engine.sample_rate:.4f} noise_multiplier={engine.noise_multiplier}")
        if spent > epsilon + 1e-9:
            notes.append(f"OVERSPENT: {spent:.4f} > {epsilon}")
    elif name in CUBE:
        notes.append("library reports no spend; MST/AIM spend exactly (epsilon, delta) via zCDP by construction")
    if not isinstance(fake, pd.DataFrame):
        fake = pd.DataFrame(list(fake), columns=[c.name for c in codecs])
    fake.columns = [c.name for c in codecs]
    out = pd.DataFrame({c.name: c.decode(fake[c.name].reset_index(drop=True)) for c in codecs})
    path = out_dir / f"sn-{name}-eps{_num(epsilon)}-seed{seed}.csv"
    out.to_csv(path, index=False)
    notes.append("seeds ignored by the library for its DP noise (OpenDP / opacus os.urandom RNG); "
                 "runs are not reproducible")
    return {"synth": name, "epsilon": epsilon, "seed": seed, "delta": args.delta,
            "fit_seconds": round(fit_seconds, 2), "sample_seconds": round(sample_seconds, 2), "rows": len(out),
            "train_rows": len(enc), "columns": len(codecs), "spent_epsilon": spent, "file": path.name,
            "notes": notes}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="directory with train.csv and schema.json")
    p.add_argument("--synths", default="mst,dpctgan", help=f"comma list of {', '.join(CUBE + GAN)}")
    p.add_argument("--epsilons", default="1,3,8")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rows", type=int, default=None, help="rows to sample (default: as many as train.csv)")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--bins", type=int, default=20, help="bins per numeric column for MST/AIM")
    p.add_argument("--dpctgan-epochs", type=int, default=DPCTGAN_EPOCHS, help="most DP-CTGAN epochs")
    p.add_argument("--dpctgan-sigma", type=float, default=DPCTGAN_SIGMA, help="noise multiplier (library: 5)")
    p.add_argument("--dpctgan-batch", type=int, default=DPCTGAN_BATCH, help="batch size, even (library: 500)")
    args = p.parse_args(argv)

    out_dir = Path(args.data)
    schema = json.loads((out_dir / "schema.json").read_text())
    train = pd.read_csv(out_dir / "train.csv")
    kept = [c for c in schema["columns"] if not c.get("drop")]
    by_name = {c["name"]: c for c in kept}
    missing = [n for n in by_name if n not in train.columns]
    if missing:
        raise SystemExit(f"schema columns not in train.csv: {missing}")
    names = [n for n in train.columns if n in by_name]  # train.csv's order, dropped ones left out
    codecs = [Codec(by_name[n], train[n], args.bins) for n in names]
    enc = pd.DataFrame({c.name: c.encode(train[c.name]) for c in codecs})
    n_rows = args.rows or len(train)
    runs_path = out_dir / "sn-runs.json"
    for name in [s.strip().lower() for s in args.synths.split(",") if s.strip()]:
        for eps in [float(e) for e in args.epsilons.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                rec = run_one(name, eps, seed, codecs, enc, n_rows, args, out_dir)
                runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
                runs.append(rec)
                runs_path.write_text(json.dumps(runs, indent=1))
                print(json.dumps({k: rec[k] for k in ("synth", "epsilon", "seed", "fit_seconds", "sample_seconds",
                                                      "rows", "spent_epsilon")}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
