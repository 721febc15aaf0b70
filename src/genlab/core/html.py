"""Self-contained HTML pages in genlab's style: every report, audit and study page goes through here."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from genlab.core.runs import atomic_write_json, atomic_write_text, make_folder


def img_tag(data: bytes, alt: str, width: int | None = None) -> str:
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


def flat_rows(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += flat_rows(v, f"{prefix}{k}.")
        elif isinstance(v, float):
            rows.append((prefix + k, f"{v:.6g}"))
        elif isinstance(v, list) and len(v) > 10:
            rows.append((prefix + k, f"[{len(v)} values]"))
        else:
            rows.append((prefix + k, str(v)))
    return rows


def html_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def write_findings(out, report: dict, rows: list[tuple], heading: str, note: str) -> None:
    """A data audit's files: audit.json (everything) and audit.html (one row per finding: name, count, its first
    ids and, when a row has a fourth element, that HTML in a last column: thumbnails, text, names), self-contained.
    The fourth element is trusted HTML the modality built (escaping what it shows)."""
    out = make_folder(Path(out), "audit folder")
    atomic_write_json(out / "audit.json", report)
    extra = any(len(row) > 3 for row in rows)
    body = "".join(f"<tr><td>{html.escape(str(row[0]))}</td><td>{html.escape(str(row[1]))}</td>"
                   f"<td><code>{html.escape(json.dumps(row[2], ensure_ascii=False))}</code></td>"
                   + (f"<td>{row[3] if len(row) > 3 else ''}</td>" if extra else "") + "</tr>" for row in rows)
    atomic_write_text(out / "audit.html", html_page(
        f"genlab {heading}", f"<h1>{html.escape(heading)}</h1><p>{html.escape(note)}</p><table><tr><th>finding</th>"
        f"<th>count</th><th>first ids</th>{'<th>items</th>' if extra else ''}</tr>{body}</table>"))
