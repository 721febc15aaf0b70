"""RUN/table_report.html: fidelity, utility and privacy of a table run's synthetic rows, one section each."""

from __future__ import annotations

import html

from genlab.core.html import flat_rows, html_page, html_table
from genlab.core.runs import RunPaths, atomic_write_text


def write_table_report(paths: RunPaths, metrics: dict) -> None:
    """RUN/table_report.html: fidelity, utility and privacy of a table run's synthetic rows, one section each."""
    sections = [f"<h1>Synthetic table: {html.escape(paths.root.name)}</h1>"]
    notes = {"fidelity": "KS / TVD: 0 is identical; classifier AUC: 0.5 means real and synthetic rows cannot be "
                         "told apart.",
             "utility": "Train on synthetic, test on real (TSTR) vs train on real, test on real (TRTR).",
             "privacy": "DCR: distance to the closest training row. A synthetic p5 at or above the real holdout's "
                        "(ratio >= 1) means synthetic rows sit no closer to training rows than unseen real rows "
                        "do. Membership-inference AUC 0.5: no signal.",
             "differential_privacy": "Trained with DP-SGD (train.privacy): epsilon is what the accountant says the "
                                     "training rows' phases spent at delta; the schema's bounds and categories were "
                                     "declared public."}
    for name in ("fidelity", "utility", "privacy", "differential_privacy"):
        if name == "differential_privacy" and not metrics.get(name):
            continue
        section = metrics.get(name)
        body = ("<p>not measured: " + html.escape(str(section.get("skipped"))) + "</p>"
                if isinstance(section, dict) and "skipped" in section else html_table(flat_rows(section or {})))
        sections.append(f"<h2>{name.replace('_', ' ').title()}</h2><p>{html.escape(notes[name])}</p>{body}")
    atomic_write_text(paths.root / "table_report.html", html_page("genlab table report", "\n".join(sections)))
