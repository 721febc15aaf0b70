"""What every study shares: arms that are done once (a JSON result per arm, skipped when present), progress
lines, and the report (a PNG plot and an HTML table)."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path

from genlab.core.runs import atomic_write_json, atomic_write_text, read_json


class Study:
    """A folder of arm results; `arm(name, compute)` returns the stored result or computes and stores it.
    One progress line per arm start and end (also in logs, where progress bars are off)."""

    def __init__(self, out: str | Path, total: int, progress: bool = True):
        self.out = Path(out)
        self.results = self.out / "arms"
        self.results.mkdir(parents=True, exist_ok=True)
        self.total, self.done, self.progress, self.t0 = total, 0, progress, time.perf_counter()

    def arm(self, name: str, compute: Callable[[], dict]) -> dict:
        path = self.results / f"{name}.json"
        self.done += 1
        if path.is_file():
            self._say(f"[{self.done}/{self.total}] {name}: done before, kept")
            return read_json(path)
        self._say(f"[{self.done}/{self.total}] {name} ...")
        t0 = time.perf_counter()
        result = {"arm": name, **compute(), "arm_seconds": round(time.perf_counter() - t0, 1)}
        atomic_write_json(path, result)
        self._say(f"[{self.done}/{self.total}] {name}: done in {result['arm_seconds']} s "
                  f"({time.perf_counter() - self.t0:.0f} s so far)")
        return result

    def _say(self, line: str) -> None:
        if self.progress:
            print(line, flush=True)


def write_table(out: Path, title: str, intro: str, columns: list[str], rows: list[list], plot: str | None) -> None:
    """report.html: the plot (embedded by file name) above a table; rows are lists of cells."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    figure = f"<p><img src='{html.escape(plot)}' style='max-width:100%'></p>" if plot else ""
    from genlab.core.html import html_page

    atomic_write_text(out / "report.html", html_page(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}"
                                                           f"</p>{figure}<table><tr>{head}</tr>{body}</table>"))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)
