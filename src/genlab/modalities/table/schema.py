"""The schema of a table: each column's kind, what it holds, and what would be wrong to fit as it is.

Inferred from the data, written as YAML for the user to edit (change a kind, drop a column), read back with
validation. Flags are raised before fitting: id-like columns (every value distinct: a synthesizer would
memorise or waste capacity on them), constant columns, and categorical columns with so many categories that
their one-hot encoding would cost a lot of memory (stated in bytes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from genlab.core.errors import GenlabError

KINDS = ("continuous", "integer", "categorical", "boolean", "datetime")
TRUTHY, FALSY = {"true", "t", "yes", "y"}, {"false", "f", "no", "n"}
MAX_MODES = 10  # mixture components per numeric column (the encoded width is 1 + modes)


@dataclass
class Column:
    name: str
    kind: str
    missing: float = 0.0  # fraction of rows without a value
    distinct: int = 0
    minimum: float | str | None = None  # numbers and datetimes (ISO text): outputs stay inside
    maximum: float | str | None = None
    categories: list = field(default_factory=list)  # categorical / boolean, most frequent first
    resolution: float | None = None  # datetime: the step all values are multiples of, seconds (a day: 86400)
    flags: list[str] = field(default_factory=list)  # id-like | constant | high-cardinality
    drop: bool = False  # leave the column out of the synthesizer (set for id-like and constant ones)

    @property
    def encoded_width(self) -> int:
        """Columns of the encoded matrix (numbers: value + one-hot mode; categories: one-hot; + missing)."""
        if self.drop:
            return 0
        if self.kind in ("categorical", "boolean"):
            return len(self.categories) + (1 if self.missing else 0)
        return 1 + MAX_MODES + (1 if self.missing else 0)


@dataclass
class Schema:
    columns: list[Column]
    rows: int

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise GenlabError(f"no column {name!r} in the schema (columns: {', '.join(c.name for c in self.columns)})")

    @property
    def kept(self) -> list[Column]:
        return [c for c in self.columns if not c.drop]

    def memory_bytes(self) -> int:
        """float32 size of the encoded table: what one pass over the data costs in memory."""
        return self.rows * sum(c.encoded_width for c in self.columns) * 4

    def to_yaml(self) -> str:
        return yaml.safe_dump({"rows": self.rows, "columns": [_plain(dataclasses.asdict(c)) for c in self.columns]},
                              sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, where: str = "schema") -> Schema:
        try:
            raw = yaml.safe_load(text)
            columns = [Column(**c) for c in raw["columns"]]
            schema = cls(columns, int(raw["rows"]))
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise GenlabError(f"{where} is not a genlab table schema ({str(exc)[:200]})") from None
        for c in schema.columns:
            if c.kind not in KINDS:
                raise GenlabError(f"{where}: column {c.name!r} has kind {c.kind!r}; choose one of {', '.join(KINDS)}")
        return schema

    def save(self, path: str | Path) -> None:
        from genlab.core.runs import atomic_write_text

        atomic_write_text(Path(path), self.to_yaml())

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        path = Path(path)
        if not path.is_file():
            raise GenlabError(f"schema file not found: {path}")
        return cls.from_yaml(path.read_text(), str(path))


def _plain(value):
    """numpy scalars to Python ones, so the YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def infer_schema(df: pd.DataFrame, max_categories: int = 100, small_integer_categories: int = 10) -> Schema:
    """Each column's kind and statistics. Integers with at most `small_integer_categories` distinct values
    are categorical (counts, codes); more categories than `max_categories` raise the high-cardinality flag."""
    return Schema([_infer_column(df[name], max_categories, small_integer_categories) for name in df.columns],
                  int(len(df)))


def _infer_column(s: pd.Series, max_categories: int, small_integer_categories: int) -> Column:
    values = s.dropna()
    col = Column(str(s.name), "categorical", missing=round(float(s.isna().mean()), 6),
                 distinct=int(values.nunique()))
    if pd.api.types.is_bool_dtype(s) or _is_boolean_text(values):
        col.kind = "boolean"
    elif pd.api.types.is_datetime64_any_dtype(s) or _is_datetime_text(values):
        col.kind = "datetime"
        stamps = pd.to_datetime(values, errors="coerce", format="mixed")
        col.minimum, col.maximum = str(stamps.min()), str(stamps.max())
        micros = stamps.dropna().astype("datetime64[us]").astype("int64").to_numpy()
        col.resolution = next((r for r in (86400, 3600, 60, 1) if np.all(micros % (r * 10**6) == 0)), 1e-6)
    elif pd.api.types.is_numeric_dtype(s):
        integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0)) if len(values) else False
        if integral and col.distinct <= small_integer_categories:
            col.kind = "categorical"
        else:
            col.kind = "integer" if integral else "continuous"
            col.minimum, col.maximum = float(values.min()), float(values.max())
    if col.kind in ("categorical", "boolean"):
        col.categories = [_plain(v) for v in values.value_counts().index.tolist()]
    if col.distinct <= 1:
        col.flags.append("constant")
    if col.distinct == len(values) and len(values) > 20 and col.kind in ("categorical", "integer"):
        col.flags.append("id-like")
    if col.kind == "categorical" and col.distinct > max_categories:
        col.flags.append("high-cardinality")
    col.drop = bool({"constant", "id-like"} & set(col.flags))
    return col


def _is_boolean_text(values: pd.Series) -> bool:
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)) or values.empty:
        return False
    seen = {str(v).strip().lower() for v in values.unique()[:10]}
    return len(values.unique()) <= 2 and seen <= TRUTHY | FALSY


def _is_datetime_text(values: pd.Series) -> bool:
    """Text that parses as dates for at least 95% of a sample (and is not just numbers)."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)) or values.empty:
        return False
    sample = values.sample(min(len(values), 200), random_state=0).astype(str)
    if sample.str.fullmatch(r"[-+]?\d+(\.\d+)?").mean() > 0.5:
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


def describe_flags(schema: Schema) -> list[str]:
    """One line per flagged column, with what its encoding would cost."""
    lines = []
    for c in schema.columns:
        if c.flags:
            cost = schema.rows * len(c.categories) * 4 if c.kind == "categorical" else schema.rows * c.encoded_width * 4
            lines.append(f"{c.name}: {', '.join(c.flags)} ({c.distinct} distinct values; one-hot would take "
                         f"{cost / 2**20:.1f} MiB){'; dropped' if c.drop else ''}")
    return lines
