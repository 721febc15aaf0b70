"""`genlab report`: one self-contained HTML file (images inlined) from what the run directory holds."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genlab.runs import RunPaths, atomic_write_bytes, atomic_write_text, read_json  # noqa: E402
from genlab.train.log import read_log  # noqa: E402


def loss_curves_png(paths: RunPaths) -> bytes | None:
    series = read_log(paths.log)
    metrics = sorted({m for (split, m) in series if m != "lr_factor"})
    if not metrics:
        return None
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
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
    plt.close(fig)
    return buf.getvalue()


def _img(data: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{w} style="image-rendering:pixelated" src="data:image/png;base64,' \
           f'{base64.b64encode(data).decode()}">'


STYLE = ("body{font:14px system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 8px;vertical-align:top}"
         "code{font-size:12px}pre{background:#f4f4f4;padding:1em}")


def html_page(title: str, body: str) -> str:
    """One self-contained page in genlab's style: every report, audit and study page goes through here."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def _table(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _table(v, f"{prefix}{k}.")
        elif isinstance(v, float):
            rows.append((prefix + k, f"{v:.6g}"))
        elif isinstance(v, list) and len(v) > 10:
            rows.append((prefix + k, f"[{len(v)} values]"))
        else:
            rows.append((prefix + k, str(v)))
    return rows


def write_report(paths: RunPaths) -> RunPaths:
    sections = [f"<h1>genlab run: {html.escape(paths.root.name)}</h1>"]
    summary = read_json(paths.summary) if paths.summary.is_file() else {}
    metrics = read_json(paths.metrics) if paths.metrics.is_file() else None
    dataset = read_json(paths.dataset) if paths.dataset.is_file() else {}
    if summary:
        sections.append("<h2>Training</h2>" + _html_table(_table(summary)))
    curves = loss_curves_png(paths)
    if curves:
        atomic_write_bytes(paths.root / "loss_curves.png", curves)
    sections.append("<h2>Loss curves</h2>" + (_img(curves, "loss curves") if curves else "<p>No log yet.</p>"))
    for name, title in (("grid.png", "Samples"), ("by_class.png", "Samples by class (one row per class)"),
                        ("closest_to_train.png", "Samples closest to training images (top) and their nearest "
                                                 "training image (bottom)")):
        path = paths.samples / name
        if path.is_file():
            width = 560 if name == "grid.png" else None
            sections.append(f"<h2>{title}</h2>" + _img(path.read_bytes(), title, width=width))
    if metrics:
        sections.append("<h2>Metrics</h2>" + _html_table(_table(metrics)))
    else:
        sections.append("<h2>Metrics</h2><p>Not evaluated yet: run <code>genlab eval RUN</code>.</p>")
    sections.append("<h2>Dataset</h2>" + _html_table(_table(dataset)))
    config = paths.config.read_text() if paths.config.is_file() else ""
    sections.append(f"<h2>Resolved config</h2><pre>{html.escape(config)}</pre>")
    atomic_write_text(paths.report, html_page("genlab report", "\n".join(sections)))
    return paths


def _html_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


__all__ = ["write_report", "loss_curves_png"]


def write_findings(out, report: dict, rows: list[tuple], heading: str, note: str) -> None:
    """A data audit's files: audit.json (everything) and audit.html (one row per finding: name, count and
    its first ids), self-contained."""
    import json
    from pathlib import Path

    from genlab.runs import atomic_write_json, atomic_write_text, make_folder

    out = make_folder(Path(out), "audit folder")
    atomic_write_json(out / "audit.json", report)
    body = "".join(f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td>"
                   f"<td><code>{html.escape(json.dumps(c, ensure_ascii=False))}</code></td></tr>" for a, b, c in rows)
    atomic_write_text(out / "audit.html", html_page(
        f"genlab {heading}", f"<h1>{html.escape(heading)}</h1><p>{html.escape(note)}</p><table><tr><th>finding</th>"
        f"<th>count</th><th>first ids</th></tr>{body}</table>"))


def write_table_report(paths: RunPaths, metrics: dict) -> None:
    """RUN/table_report.html: fidelity, utility and privacy of a table run's synthetic rows, one section each."""
    sections = [f"<h1>Synthetic table: {html.escape(paths.root.name)}</h1>"]
    notes = {"fidelity": "KS / TVD: 0 is identical; classifier AUC: 0.5 means real and synthetic rows cannot be "
                         "told apart.",
             "utility": "Train on synthetic, test on real (TSTR) vs train on real, test on real (TRTR).",
             "privacy": "DCR: distance to the closest training row. A synthetic p5 at or above the real holdout's "
                        "(ratio >= 1) means synthetic rows sit no closer to training rows than unseen real rows "
                        "do. Membership-inference AUC 0.5: no signal."}
    for name in ("fidelity", "utility", "privacy"):
        section = metrics.get(name)
        body = ("<p>not measured: " + html.escape(str(section.get("skipped"))) + "</p>"
                if isinstance(section, dict) and "skipped" in section else _html_table(_table(section or {})))
        sections.append(f"<h2>{name.title()}</h2><p>{html.escape(notes[name])}</p>{body}")
    atomic_write_text(paths.root / "table_report.html", html_page("genlab table report", "\n".join(sections)))
