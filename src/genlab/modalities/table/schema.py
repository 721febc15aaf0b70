"""The schema of a table: each column's kind, why it was chosen, what it holds, what was read as missing, and
what would be wrong to fit as it is.

Inferred from the data, written as YAML for the user to edit (change a kind, drop a column), read back with
validation; a run re-derives the statistics of an edited kind from the data (schema_from_file). The kinds:
booleans (two values such as yes/no, true/false), datetimes (text that reads as dates), numbers, and text. An
integer column with at most SMALL_INTEGER_CATEGORIES distinct values is categorical (counts, codes, ratings),
with more it is an integer; numbers with fractions are continuous; text is categorical. Flags are raised
before fitting: id-like columns (every value distinct: a synthesizer would memorise or waste capacity on
them), constant columns, and categorical columns with so many categories that their one-hot encoding would
cost a lot of memory (stated in bytes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from genlab.core.errors import GenlabError
from genlab.modalities.table.io import EMPTY, LONG_INTEGER, PLAIN_NUMBER

KINDS = ("continuous", "integer", "categorical", "boolean", "datetime")
SMALL_INTEGER_CATEGORIES = 10  # integer columns with at most this many distinct values are categorical
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
    why: str = ""  # why this kind, e.g. "integer with 4 distinct values (<= 10) -> categorical"
    read_as_missing: dict[str, int] = field(default_factory=dict)  # what counted as missing -> cells (tables.io)

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
    missing_values: list[str] = field(default_factory=list)  # data.missing_values the table was read with
    # the user declares the bounds and categories public knowledge (not read off private rows): under
    # train.privacy the run then takes them from this file as written
    public: bool = False

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
        return yaml.safe_dump({"rows": self.rows, "missing_values": list(self.missing_values),
                               **({"public": True} if self.public else {}),
                               "columns": [_plain(dataclasses.asdict(c)) for c in self.columns]},
                              sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, where: str = "schema") -> Schema:
        try:
            raw = yaml.safe_load(text)
            columns = [Column(**c) for c in raw["columns"]]
            schema = cls(columns, int(raw["rows"]), [str(m) for m in raw.get("missing_values") or []],
                         bool(raw.get("public", False)))
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


def infer_schema(df: pd.DataFrame, max_categories: int = 100,
                 small_integer_categories: int = SMALL_INTEGER_CATEGORIES, kinds: dict[str, str] | None = None,
                 read_as_missing: dict[str, dict[str, int]] | None = None,
                 missing_values: list[str] | tuple[str, ...] = ()) -> Schema:
    """Each column's kind (with why) and statistics. Integers with at most `small_integer_categories` distinct
    values are categorical; more categories than `max_categories` raise the high-cardinality flag. `kinds`:
    {column: kind} chosen by the user (the schema file), whose statistics are then derived for that kind.
    `read_as_missing` and `missing_values`: what the loader read as missing (tables.io.LoadedTable)."""
    kinds, read_as_missing = kinds or {}, read_as_missing or {}
    columns = []
    for name in df.columns:
        col = _infer_column(df[name], max_categories, small_integer_categories, kinds.get(str(name)))
        col.read_as_missing = dict(read_as_missing.get(str(name), {}))
        columns.append(col)
    return Schema(columns, int(len(df)), list(missing_values))


def table_schema(table, kinds: dict[str, str] | None = None) -> Schema:
    """infer_schema of a tables.io.LoadedTable, recording what its loader read as missing."""
    return infer_schema(table.frame, kinds=kinds, read_as_missing=table.read_as_missing,
                        missing_values=table.missing_values)


def schema_from_file(path: str | Path, table) -> Schema:
    """The schema a run uses when the user hands one (data.schema) for a tables.io.LoadedTable: each listed
    column's kind and drop come from the file, its statistics from the data, so editing a kind is all it takes
    to override a guess."""
    edited = Schema.load(path)
    if sorted(edited.missing_values) != sorted(table.missing_values):
        raise GenlabError(f"{path} was inferred with data.missing_values={edited.missing_values}, but the table is "
                          f"read with {table.missing_values}: set the same list in the recipe")
    absent = [c.name for c in edited.columns if c.name not in table.frame.columns]
    if absent:
        raise GenlabError(f"the table has no column {absent[0]!r} that the schema {path} lists")
    schema = infer_schema(table.frame[[c.name for c in edited.columns]], kinds={c.name: c.kind for c in edited.columns},
                          read_as_missing=table.read_as_missing, missing_values=table.missing_values)
    for col, chosen in zip(schema.columns, edited.columns, strict=True):
        col.drop = chosen.drop
    return schema


def _infer_column(s: pd.Series, max_categories: int, small_integer_categories: int,
                  chosen: str | None = None) -> Column:
    values = s.dropna()
    col = Column(str(s.name), "categorical", missing=round(float(s.isna().mean()), 6),
                 distinct=int(values.nunique()))
    col.kind, col.why = _kind_and_why(values, col.distinct, small_integer_categories)
    if chosen is not None and chosen != col.kind:
        if chosen not in KINDS:
            raise GenlabError(f"column {col.name!r} has kind {chosen!r}; choose one of {', '.join(KINDS)}")
        col.kind, col.why = chosen, f"set in the schema file (inferred: {col.why})"
    if col.kind == "datetime":
        stamps = values if pd.api.types.is_datetime64_any_dtype(values) else \
            pd.to_datetime(values, errors="coerce", format="mixed")
        _all_read(col, values, stamps, "dates")
        col.minimum, col.maximum = str(stamps.min()), str(stamps.max())
        micros = stamps.astype("datetime64[us]").astype("int64").to_numpy()
        col.resolution = next((r for r in (86400, 3600, 60, 1) if np.all(micros % (r * 10**6) == 0)), 1e-6)
    elif col.kind in ("integer", "continuous"):
        numbers = pd.to_numeric(values, errors="coerce")
        _all_read(col, values, numbers, "numbers")
        if len(numbers):
            col.minimum, col.maximum = float(numbers.min()), float(numbers.max())
    else:
        col.categories = [_plain(v) for v in values.value_counts().index.tolist()]
    if col.distinct <= 1:
        col.flags.append("constant")
    if col.distinct == len(values) and len(values) > 20 and col.kind in ("categorical", "integer"):
        col.flags.append("id-like")
    if col.kind == "categorical" and col.distinct > max_categories:
        col.flags.append("high-cardinality")
    col.drop = bool({"constant", "id-like"} & set(col.flags))
    return col


def _kind_and_why(values: pd.Series, distinct: int, small_integer_categories: int) -> tuple[str, str]:
    """The kind a column's present values suggest, and the reason in words."""
    if values.empty:
        return "categorical", "no values (every cell missing) -> categorical"
    if pd.api.types.is_bool_dtype(values):
        return "boolean", "true/false values -> boolean"
    if _is_boolean_text(values):
        return "boolean", f"text with 2 values ({'/'.join(map(str, values.value_counts().index))}) -> boolean"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime", "dates -> datetime"
    if pd.api.types.is_numeric_dtype(values):
        if not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
            return "continuous", "numbers with fractions -> continuous"
        if distinct <= small_integer_categories:
            return "categorical", f"integer with {distinct} distinct values (<= {small_integer_categories}) -> " \
                                  "categorical"
        return "integer", f"integer with {distinct} distinct values (> {small_integer_categories}) -> integer"
    why = f"text with {distinct} distinct values -> categorical"
    text = values.astype(str)
    if _is_datetime_text(values):
        dates = pd.to_datetime(text, errors="coerce", format="mixed").notna()
        return ("datetime", "text that reads as dates -> datetime") if dates.all() else \
            ("categorical", why + _unread(text, dates, "dates"))
    numbers = pd.to_numeric(text, errors="coerce").notna()
    if numbers.all():
        codes = text[~text.str.fullmatch(PLAIN_NUMBER.pattern) | text.str.fullmatch(LONG_INTEGER.pattern)].unique()[:3]
        return "categorical", why + (f" (numbers written as codes stay as written, e.g. {', '.join(map(repr, codes))})"
                                     if len(codes) else " (numbers stored as text)")
    return "categorical", why + (_unread(text, numbers, "numbers") if numbers.mean() >= 0.5 else "")


def _unread(text: pd.Series, read: pd.Series, what: str) -> str:
    """The cells that kept a mostly-{what} column from being read as {what}, and what to do if they mean
    missing."""
    odd = text[~read.to_numpy()].value_counts()
    shown = ", ".join(f"{v!r} x{n}" for v, n in odd.head(3).items())
    return f"; {int(odd.sum())} cells are not {what} ({shown}): if they mean missing, list them in " \
           "data.missing_values"


def _all_read(col: Column, values: pd.Series, parsed: pd.Series, what: str) -> None:
    """A kind chosen in the schema file must fit every value: one clear error naming a value that does not."""
    bad = values[parsed.isna().to_numpy()]
    if len(bad):
        raise GenlabError(f"column {col.name!r} is {col.kind} but {bad.iloc[0]!r} is not one of the {what} it "
                          "needs; choose another kind or list such values in data.missing_values")


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


def schema_table(schema: Schema) -> list[str]:
    """The guesses as lines of a table to read before training: column, kind, missing %, what was read as
    missing, and why the kind."""
    rows = [("column", "kind", "missing", "read as missing", "why")]
    for c in schema.columns:
        counted = ", ".join(f"{what if what == EMPTY else repr(what)} x{n}" for what, n in c.read_as_missing.items())
        rows.append((c.name, c.kind + (" (dropped)" if c.drop else ""), f"{c.missing:.1%}", counted or "-", c.why))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:<{widths[3]}}  {r[4]}".rstrip()
            for r in rows]
