"""genlab's ctgan family vs the `ctgan` package (SDV's CTGAN, installed in a separate venv, never a genlab
dependency) on the same training rows, the same number of epochs, scored by the same genlab metrics.

    python bench/ctgan_compare.py export RUN bench/out/ctgan-cmp/train.csv          # genlab venv
    /tmp/ctganenv/bin/python bench/ctgan_compare.py fit bench/out/ctgan-cmp/train.csv \\
        --epochs 256 --discrete a,b,c --n 3902 --out bench/out/ctgan-cmp/samples.csv  # ctgan venv
    python bench/ctgan_compare.py score RUN bench/out/ctgan-cmp/samples.csv          # genlab venv

`export` also prints the epochs that match the run (steps x batch size / training rows) and the discrete
columns; `score` prints genlab's metrics for the package's samples next to the run's own metrics.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def export(run: str, out: str) -> None:
    from genlab.pipeline import open_run

    loaded = open_run(run)
    train = loaded.dataset.split_frame("train")[[c.name for c in loaded.dataset.schema.kept]]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    train.to_csv(out, index=False)
    tc = loaded.config.train
    discrete = [c.name for c in loaded.dataset.schema.kept if c.kind in ("categorical", "boolean")]
    print(json.dumps({"rows": len(train), "epochs": round(tc.steps * tc.batch_size / len(train)),
                      "discrete": ",".join(discrete), "train_seconds": json.loads(
                          (Path(run) / "train_summary.json").read_text())["train_seconds"]}))


def fit(train_csv: str, epochs: int, discrete: str, n: int, out: str, seed: int = 0) -> None:
    import numpy as np
    import pandas as pd
    import torch
    from ctgan import CTGAN

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    data = pd.read_csv(train_csv)
    columns = [c for c in discrete.split(",") if c]
    for c in columns:
        data[c] = data[c].astype(str)
    model = CTGAN(epochs=epochs, batch_size=500, pac=10, verbose=False)
    t0 = time.perf_counter()
    model.fit(data, columns)
    seconds = time.perf_counter() - t0
    model.sample(n).to_csv(out, index=False)
    Path(out).with_suffix(".json").write_text(json.dumps({"fit_seconds": round(seconds, 1), "epochs": epochs}))
    print(json.dumps({"fit_seconds": round(seconds, 1), "epochs": epochs, "rows": n}))


def score(run: str, samples: str) -> None:
    import pandas as pd

    from genlab.modalities.table import metrics as tables
    from genlab.pipeline import open_run

    loaded = open_run(run)
    ds, ec = loaded.dataset, loaded.config.eval
    train, test = ds.split_frame("train"), ds.split_frame("test")
    fake = pd.read_csv(samples)
    for c in ds.schema.kept:  # back to the table's own types (the package writes categories as text)
        if c.kind in ("categorical", "boolean"):
            kinds = {str(v): v for v in c.categories}
            fake[c.name] = fake[c.name].map(lambda v, k=kinds: k.get(str(v), v))
    x_train, x_test, x_fake = tables.features([train, test, fake], ds.schema)
    theirs = {"fidelity": {**tables.column_fidelity(test, fake, ds.schema),
                           **tables.pairwise_fidelity(test, fake, ds.schema),
                           "classifier_two_sample_auc": tables.classifier_two_sample_auc(x_test, x_fake, ec.seed)},
              "utility": tables.utility(train, fake, test, ds.schema, ec.target, ec.seed) if ec.target else {},
              "privacy": tables.privacy(x_train, x_test, x_fake)}
    ours = json.loads((Path(run) / "metrics.json").read_text())
    meta = json.loads(Path(samples).with_suffix(".json").read_text())
    key = "accuracy" if theirs["utility"].get("task") == "classification" else "r2"
    rows = [("mean column KS / TVD", lambda m: m["fidelity"]["mean_ks_or_tvd"]),
            ("correlation |diff|", lambda m: m["fidelity"].get("correlation_mean_abs_difference")),
            ("contingency TVD", lambda m: m["fidelity"].get("contingency_mean_tvd")),
            ("classifier two-sample AUC", lambda m: m["fidelity"]["classifier_two_sample_auc"]),
            (f"TSTR {key}", lambda m: m["utility"]["train_synthetic_test_real"][key]),
            ("TSTR / TRTR", lambda m: m["utility"]["tstr_over_trtr"]),
            ("DCR p5 ratio", lambda m: m["privacy"]["dcr_p5_ratio"]),
            ("membership-inference AUC", lambda m: m["privacy"]["membership_inference_auc"])]
    summary = json.loads((Path(run) / "train_summary.json").read_text())
    print(f"{'metric':<28}{'genlab':>10}{'ctgan pkg':>12}")
    for name, get in rows:
        print(f"{name:<28}{get(ours):>10.4f}{get(theirs):>12.4f}")
    print(f"{'train seconds':<28}{summary['train_seconds']:>10.1f}{meta['fit_seconds']:>12.1f}")
    out = Path(samples).with_name("comparison.json")
    out.write_text(json.dumps({"genlab": {n: get(ours) for n, get in rows},
                               "ctgan": {n: get(theirs) for n, get in rows},
                               "genlab_train_seconds": summary["train_seconds"],
                               "ctgan_fit_seconds": meta["fit_seconds"], "epochs": meta["epochs"]}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export")
    p.add_argument("run")
    p.add_argument("out")
    p = sub.add_parser("fit")
    p.add_argument("train_csv")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--discrete", default="")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("score")
    p.add_argument("run")
    p.add_argument("samples")
    a = parser.parse_args()
    if a.cmd == "export":
        export(a.run, a.out)
    elif a.cmd == "fit":
        fit(a.train_csv, a.epochs, a.discrete, a.n, a.out, a.seed)
    else:
        score(a.run, a.samples)
