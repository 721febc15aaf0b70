"""`genlab compare`: several runs' image metrics side by side, as a table, a CSV and a bar plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from matplotlib.figure import Figure

from genlab.core.errors import GenlabError
from genlab.core.runs import RunPaths, atomic_write_bytes, atomic_write_text, existing_run, read_json

HEADLINE = [("fid", "value"), ("kid", "mean"), ("inception_score", "mean"), ("precision_recall", "precision"),
            ("precision_recall", "recall"), ("density_coverage", "density"), ("density_coverage", "coverage")]


def _metrics_for(path: Path) -> dict:
    paths = existing_run(path)
    if not paths.metrics.is_file() or "image" not in read_json(paths.metrics):
        from genlab.pipeline import evaluate_run, open_run

        evaluate_run(open_run(path))
    return read_json(RunPaths(paths.root).metrics)


def compare_runs(runs: list[Path], out: Path) -> str:
    rows, keys = [], set()
    for path in runs:
        metrics = _metrics_for(path)
        img = metrics["image"]
        keys.add((metrics["dataset_fingerprint"], img["extractor"], img.get("real_features_sha")))
        row = {"run": Path(path).name, "family": metrics["family"]}
        for name, field in HEADLINE:
            value = img.get(name, {}).get(field)
            row[f"{name}.{field}"] = "" if value is None else value
        rows.append(row)
    if len(keys) > 1:
        raise GenlabError("runs were evaluated on different real features (dataset or extractor differ): "
                          + "; ".join(f"{k[0]}/{k[1]}" for k in sorted(keys, key=str)))
    columns = list(rows[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns)
    writer.writeheader()
    writer.writerows(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.csv", buf.getvalue())
    atomic_write_bytes(out / "compare.png", _bar_plot(rows, columns[2:]))
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(_fmt(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _bar_plot(rows: list[dict], metrics: list[str]) -> bytes:
    shown = [m for m in metrics if any(isinstance(r[m], float) for r in rows)]
    fig = Figure(figsize=(2.6 * max(1, len(shown)), 3.2))
    axes = fig.subplots(1, max(1, len(shown)), squeeze=False)
    for ax, metric in zip(axes[0], shown, strict=False):
        ax.bar([r["run"] for r in rows], [r[metric] if isinstance(r[metric], float) else 0 for r in rows])
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()
