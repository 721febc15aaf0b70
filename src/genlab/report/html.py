"""`genlab report`: one self-contained HTML file (images inlined) from what the run directory holds."""

from __future__ import annotations

import html
import io

from matplotlib.figure import Figure

from genlab.core.html import flat_rows, html_page, html_table, img_tag
from genlab.core.runs import RunPaths, atomic_write_bytes, atomic_write_text, read_json
from genlab.train.log import read_log


def loss_curves_png(paths: RunPaths) -> bytes | None:
    series = read_log(paths.log)
    metrics = sorted({m for (split, m) in series if m != "lr_factor"})
    if not metrics:
        return None
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for split, style in (("train", "-"), ("val", "o-")):
            if (split, metric) in series:
                steps, values = series[(split, metric)]
                ax.plot(steps, values, style, label=split, markersize=3)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def write_report(paths: RunPaths) -> RunPaths:
    sections = [f"<h1>genlab run: {html.escape(paths.root.name)}</h1>"]
    summary = read_json(paths.summary) if paths.summary.is_file() else {}
    metrics = read_json(paths.metrics) if paths.metrics.is_file() else None
    dataset = read_json(paths.dataset) if paths.dataset.is_file() else {}
    if summary:
        sections.append("<h2>Training</h2>" + html_table(flat_rows(summary)))
    curves = loss_curves_png(paths)
    if curves:
        atomic_write_bytes(paths.root / "loss_curves.png", curves)
    sections.append("<h2>Loss curves</h2>" + (img_tag(curves, "loss curves") if curves else "<p>No log yet.</p>"))
    for name, title in (("grid.png", "Samples"), ("by_class.png", "Samples by class (one row per class)"),
                        ("closest_to_train.png", "Samples closest to training images (top) and their nearest "
                                                 "training image (bottom)")):
        path = paths.samples / name
        if path.is_file():
            width = 560 if name == "grid.png" else None
            sections.append(f"<h2>{title}</h2>" + img_tag(path.read_bytes(), title, width=width))
    if metrics:
        sections.append("<h2>Metrics</h2>" + html_table(flat_rows(metrics)))
    else:
        sections.append("<h2>Metrics</h2><p>Not evaluated yet: run <code>genlab eval RUN</code>.</p>")
    sections.append("<h2>Dataset</h2>" + html_table(flat_rows(dataset)))
    config = paths.config.read_text() if paths.config.is_file() else ""
    sections.append(f"<h2>Resolved config</h2><pre>{html.escape(config)}</pre>")
    atomic_write_text(paths.report, html_page("genlab report", "\n".join(sections)))
    return paths
