"""What a table run's synthetic rows are worth: fidelity, utility and privacy against the real splits."""

from __future__ import annotations

import time

from genlab.modalities.table import metrics as tables
from genlab.modalities.table.report import write_table_report
from genlab.modalities.table.sampling import sample_rows


def evaluate_table_run(run, ec, quiet: bool = True) -> dict:
    """As many synthetic rows as training rows, judged against the real rows: fidelity (per column, per pair,
    classifier two-sample AUC) against the test split, utility for eval.target (TSTR vs TRTR), privacy (DCR,
    NNDR, membership inference) with the test split as the unseen holdout. Writes table_report.html."""
    ds = run.dataset
    metrics: dict = {"timings_seconds": {}}
    t0 = time.perf_counter()
    train, test = ds.split_frame("train"), ds.split_frame("test")
    fake = sample_rows(run, max(1, len(train)), ec.seed)
    metrics["constraints"] = {"rules": ds.constraints, **fake.attrs["constraints"]}
    metrics["timings_seconds"]["sampling"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    x_train, x_test, x_fake = tables.features([train, test, fake], ds.schema)
    metrics["fidelity"] = {"reference": f"test split ({len(test)} rows) vs {len(fake)} synthetic rows",
                           **tables.column_fidelity(test, fake, ds.schema),
                           **tables.pairwise_fidelity(test, fake, ds.schema),
                           "classifier_two_sample_auc": tables.classifier_two_sample_auc(x_test, x_fake, ec.seed)}
    metrics["timings_seconds"]["fidelity"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    metrics["utility"] = (tables.utility(train, fake, test, ds.schema, ec.target, ec.seed) if ec.target
                          else {"skipped": "set eval.target to the column a downstream model predicts"})
    metrics["timings_seconds"]["utility"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    metrics["privacy"] = tables.privacy(x_train, x_test, x_fake)
    metrics["timings_seconds"]["privacy"] = round(time.perf_counter() - t0, 3)
    write_table_report(run.paths, metrics)
    return metrics
