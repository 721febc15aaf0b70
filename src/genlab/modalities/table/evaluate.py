"""What a table run's synthetic rows are worth: fidelity, utility and privacy against the real splits."""

from __future__ import annotations

from genlab.core.progress import timed
from genlab.modalities.table import metrics as tables
from genlab.modalities.table.report import write_table_report
from genlab.modalities.table.sampling import sample_rows


def evaluate_table_run(run, ec, quiet: bool = True) -> dict:
    """As many synthetic rows as training rows, judged against the real rows: fidelity (per column, per pair,
    classifier two-sample AUC) against the test split, utility for eval.target (TSTR vs TRTR), privacy (DCR,
    NNDR, membership inference) with the test split as the unseen holdout. Writes table_report.html."""
    ds, timings = run.dataset, {}
    metrics: dict = {"timings_seconds": timings}
    with timed(timings, "sampling", quiet):
        train, test = ds.split_frame("train"), ds.split_frame("test")
        fake = sample_rows(run, max(1, len(train)), ec.seed)
        metrics["constraints"] = {"rules": ds.constraints, **fake.attrs["constraints"]}
    with timed(timings, "fidelity", quiet):
        x_train, x_test, x_fake = tables.features([train, test, fake], ds.schema)
        metrics["fidelity"] = {"reference": f"test split ({len(test)} rows) vs {len(fake)} synthetic rows",
                               **tables.column_fidelity(test, fake, ds.schema),
                               **tables.pairwise_fidelity(test, fake, ds.schema),
                               "classifier_two_sample_auc": tables.classifier_two_sample_auc(x_test, x_fake, ec.seed)}
    with timed(timings, "utility", quiet):
        metrics["utility"] = (
            tables.utility(train, fake, test, ds.schema, ec.target, ec.seed, positive=ec.positive, top_k=ec.top_k)
            if ec.target else {"skipped": "set eval.target to the column a downstream model predicts"})
    with timed(timings, "privacy", quiet):
        metrics["privacy"] = tables.privacy(x_train, x_test, x_fake)
    if run.config.train.privacy is not None and run.paths.summary.is_file():  # the guarantee of the weights
        from genlab.core.runs import read_json

        metrics["differential_privacy"] = read_json(run.paths.summary).get("privacy")
    write_table_report(run.paths, metrics)
    return metrics
