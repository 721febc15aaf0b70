"""Training log: a long-format CSV (step, split, metric, value) plus TensorBoard scalars."""

from __future__ import annotations

import csv
import errno
import io
from pathlib import Path

from genlab.core.runs import atomic_write_text, disk_full

HEADER = ["step", "split", "metric", "value"]


class NullLog:
    """What processes other than rank 0 log to: nothing (rank 0 writes the reduced figures)."""

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


class RunLog:
    def __init__(self, csv_path: Path, tensorboard_dir: Path | None, resume_step: int = 0):
        self.csv_path = Path(csv_path)
        if resume_step and self.csv_path.is_file():
            self._truncate_after(resume_step)
        elif not self.csv_path.is_file() or not resume_step:
            atomic_write_text(self.csv_path, ",".join(HEADER) + "\n")
        self._fh = self.csv_path.open("a", newline="")
        self._writer = csv.writer(self._fh)
        self._tb = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(tensorboard_dir), purge_step=resume_step or None)

    def _truncate_after(self, step: int) -> None:
        """A resumed run rewrites history from its checkpoint, so rows logged after it are dropped."""
        rows = list(csv.reader(io.StringIO(self.csv_path.read_text())))
        kept = [HEADER] + [r for r in rows[1:] if _row(r) is not None and _row(r)[0] <= step]
        buf = io.StringIO()
        csv.writer(buf).writerows(kept)
        atomic_write_text(self.csv_path, buf.getvalue())

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        try:
            for name, value in values.items():
                self._writer.writerow([step, split, name, f"{value:.6g}"])
                if self._tb is not None:
                    self._tb.add_scalar(f"{split}/{name}", value, step)
            self._fh.flush()
        except OSError as exc:  # a resumed run drops the rows after its checkpoint, a torn one among them
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(self.csv_path.parent, 64 * 1024, f"the training log {self.csv_path.name}") from None
            raise

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_log(path: Path) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """(split, metric) -> (steps, values), for plots and reports."""
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    if not Path(path).is_file():
        return series
    with Path(path).open(newline="") as fh:
        for row in list(csv.reader(fh))[1:]:
            if (parsed := _row(row)) is None:  # a row torn by a crash or a full disk
                continue
            steps, values = series.setdefault((parsed[1], parsed[2]), ([], []))
            steps.append(parsed[0])
            values.append(parsed[3])
    return series


def _row(row: list[str]) -> tuple[int, str, str, float] | None:
    """(step, split, metric, value) of a CSV row, or None for a torn or malformed one."""
    if len(row) != 4:
        return None
    try:
        return int(row[0]), row[1], row[2], float(row[3])
    except ValueError:
        return None
