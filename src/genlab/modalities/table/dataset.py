"""A table as a genlab dataset: seeded row splits, the transform fitted on the training rows only (so no test
row shapes it), encoded rows as the model's input, and the schema + transform saved with the run so that
sampling decodes exactly as training encoded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genlab.core.batch import Batch, BatchStream, fixed_batches
from genlab.core.errors import GenlabError
from genlab.core.spec import DataSpec
from genlab.core.splits import last_items, make_splits
from genlab.modalities.table.conditions import BalancedStream, category_frequencies
from genlab.modalities.table.constraints import check_constraints, constrained_rows
from genlab.modalities.table.io import load_configured_table
from genlab.modalities.table.schema import Schema, describe_flags, schema_from_file, table_schema
from genlab.modalities.table.transform import TableTransformer


@dataclass
class TableDataset:
    frame: pd.DataFrame
    transformer: TableTransformer
    encoded: torch.Tensor  # N x width float32, every row
    splits: dict[str, torch.Tensor]
    source: str
    fingerprint: str
    balance: bool = False  # training-by-sampling (tables.conditions.BalancedStream)
    constraints: list[dict] = field(default_factory=list)  # rules samples keep (tables.constraints)
    private: bool = False  # train.privacy: Poisson batches, public frequencies and transform
    modality = "table"

    @property
    def schema(self) -> Schema:
        return self.transformer.schema

    def spec(self) -> DataSpec:
        spans = tuple((s.part, s.width) for s in self.transformer.spans())
        if self.private:  # counts of private rows cost budget: conditions are drawn uniformly instead
            rows = torch.ones(1, sum(w for _, w in spans))
            return DataSpec(spans=spans, category_frequencies=category_frequencies(rows, spans))
        return DataSpec(spans=spans, category_frequencies=category_frequencies(self.encoded[self.splits["train"]],
                                                                              spans))

    def split_frame(self, split: str) -> pd.DataFrame:
        return self.frame.iloc[self.splits[split].numpy()].reset_index(drop=True)

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False) -> BatchStream | BalancedStream:
        rows = self.encoded[self.splits["train"]]
        if self.private:
            return PoissonStream(rows, batch_size, seed)
        if self.balance:
            return BalancedStream(rows, self.spec().spans, batch_size, seed)
        return BatchStream(rows, None, batch_size, seed)

    def public_batch(self, batch_size: int) -> Batch:
        """What a phase that is not private trains on under train.privacy: the right shape, no row in it."""
        return Batch(torch.zeros(batch_size, self.transformer.width), None)

    def validation_batches(self, batch_size: int, binarize_seed: int | None = None):
        return self.batches("val", batch_size)

    def batches(self, split: str, batch_size: int, binarize_seed: int | None = None, limit: int | None = None):
        """Fixed-order batches of encoded rows of a split (its first `limit` rows)."""
        return fixed_batches(self.encoded[self.splits[split]][:limit], None, batch_size)

    def check_conditions(self, conditions: dict[str, object]) -> dict[str, str]:
        """{column: value} as the table spells them; a column that cannot be conditioned on or a value the column
        never takes is an error that says which values it takes."""
        categorical = {c.name: c for c in self.schema.kept if c.kind in ("categorical", "boolean")}
        checked = {}
        for name, value in conditions.items():
            column = categorical.get(name)
            if column is None:
                raise GenlabError(f"cannot condition on {name!r}: conditions take a categorical column "
                                  f"({', '.join(categorical) or 'this table has none'})")
            names = [str(v) for v in column.categories]
            if str(value) not in names:
                raise GenlabError(f"impossible condition {name}={value}: the column takes {', '.join(names[:20])}")
            checked[name] = str(value)
        return checked

    def condition_vector(self, conditions: dict[str, object]) -> torch.Tensor:
        """The generator's condition vector asking for the first of `conditions` (one categorical column)."""
        name, value = next(iter(self.check_conditions(conditions).items()))
        names = [str(v) for v in next(c for c in self.schema.kept if c.name == name).categories]
        blocks = [s for s in self.transformer.spans() if s.part == "categories"]  # the models' condition layout
        vector = torch.zeros(1, sum(s.width for s in blocks))
        start = sum(s.width for s in blocks[:[s.column for s in blocks].index(name)])
        vector[0, start + names.index(value)] = 1.0
        return vector

    def sample_rows(self, draw, n: int, seed: int, conditions: dict[str, str] | None = None):
        """n decoded rows keeping data.constraints and, on every row, `conditions` ({column: value}, checked);
        `draw(count, seed)` returns encoded rows."""
        train = self.split_frame("train")
        wanted = asked = None
        if conditions:
            conditions = self.check_conditions(conditions)
            asked = " and ".join(f"{k}={v}" for k, v in conditions.items())

            def wanted(rows: pd.DataFrame) -> np.ndarray:
                return np.logical_and.reduce([rows[k].astype(str).to_numpy() == v for k, v in conditions.items()])

        return constrained_rows(lambda count, r: self.decode(draw(count, seed + 7919 * r)), n, self.constraints,
                                train, wanted=wanted, asked=asked or "")

    def decode(self, rows: torch.Tensor) -> pd.DataFrame:
        return self.transformer.inverse(rows.detach().double().cpu().numpy())

    def describe(self) -> dict:
        return {"source": self.source, "fingerprint": self.fingerprint, "rows": int(len(self.frame)),
                "columns": {c.name: c.kind + (" (dropped)" if c.drop else "") for c in self.schema.columns},
                "flags": describe_flags(self.schema), "encoded_width": self.transformer.width,
                "splits": {k: int(v.numel()) for k, v in self.splits.items()},
                "encoded_memory_mib": round(self.schema.memory_bytes() / 2**20, 2)}

    def save_artifacts(self, folder: Path) -> None:
        from genlab.core.runs import atomic_write_json

        self.schema.save(Path(folder) / "schema.yaml")
        atomic_write_json(Path(folder) / "transform.json", self.transformer.to_dict())


class PoissonStream:
    """DP-SGD's batches (train.privacy): each training row joins batch k independently with probability
    batch_size / rows, so sizes vary around batch_size. Batch k depends on (seed, k) only, so a checkpoint stores
    k and a resumed run draws the same batches."""

    def __init__(self, rows: torch.Tensor, batch_size: int, seed: int):
        if rows.shape[0] < batch_size:
            raise GenlabError(f"batch size {batch_size} is larger than the training split ({rows.shape[0]} rows)")
        self.rows, self.seed, self.drawn = rows, seed, 0
        self.sample_rate = batch_size / rows.shape[0]

    def next(self, noise=None) -> Batch:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.drawn)
        self.drawn += 1
        return Batch(self.rows[torch.rand(self.rows.shape[0], generator=gen) < self.sample_rate], None)

    def state(self) -> dict[str, int]:
        return {"drawn": self.drawn}

    def load_state(self, state: dict[str, int]) -> None:
        self.drawn = int(state["drawn"])


def frame_fingerprint(df: pd.DataFrame) -> str:
    """Content hash of the table (values and column names, in order)."""
    h = hashlib.sha256(json.dumps(list(df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def private_schema(cfg, table, privacy) -> Schema:
    """The schema of a private run: the file's bounds and categories as written when the user declared them public
    (`public: true` in it, or train.privacy.public_schema), else an error; an inferred schema read them off the
    rows, so it needs train.privacy.public_schema=true as the user's word that they are public anyway."""
    if cfg.balance:
        raise GenlabError("train.privacy refuses data.balance: training-by-sampling draws rows by their category "
                          "counts, which would spend budget unaccounted; unset data.balance")
    if any(isinstance(r, dict) and r.get("kind") == "combinations" for r in cfg.constraints):
        raise GenlabError("train.privacy refuses the combinations constraint: it keeps only value combinations seen "
                          "in the private rows; use range, positive or inequality rules")
    if cfg.schema:
        schema = Schema.load(cfg.schema)
        if not (schema.public or privacy.public_schema):
            raise GenlabError(f"train.privacy: the bounds and categories in {cfg.schema} must be public knowledge; "
                              "confirm with `public: true` in the file or train.privacy.public_schema=true")
        return schema
    if not privacy.public_schema:
        raise GenlabError("train.privacy: the schema would be inferred from the private rows (bounds, categories); "
                          "write one (genlab data schema), check it and set data.schema, or confirm the inferred "
                          "bounds are public with train.privacy.public_schema=true")
    return table_schema(table)


def training_table(table, train: np.ndarray):
    """The loaded table cut to its training rows: what an inferred schema looks at (no held-out row shapes it)."""
    return dataclasses.replace(table, frame=table.frame.iloc[train].reset_index(drop=True))


def load_table_dataset(cfg, run_dir: Path | None = None, privacy=None) -> TableDataset:
    """The table of `cfg` (a DataConfig with source=table): schema from data.schema or inferred, transform
    from the run (when resuming or sampling) or fitted on the training rows. `privacy` (train.privacy): the schema
    must be public and the transform is computed from it alone (TableTransformer.public)."""
    table = load_configured_table(cfg)
    df = table.frame
    splits = make_splits(len(df), last_items(cfg, len(df)), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    train_rows = splits["train"].numpy()
    saved = Path(run_dir) / "transform.json" if run_dir is not None else None
    if saved is not None and saved.is_file():
        transformer = TableTransformer.from_dict(json.loads(saved.read_text()))
    elif privacy is not None:
        transformer = TableTransformer.public(private_schema(cfg, training_table(table, train_rows), privacy))
    else:
        fitted_on = training_table(table, train_rows)
        schema = schema_from_file(cfg.schema, fitted_on) if cfg.schema else table_schema(fitted_on)
        if not schema.kept:
            raise GenlabError("every column of the table is dropped (id-like or constant); nothing to model")
        train = df.iloc[splits["train"].numpy()]
        transformer = TableTransformer.fit(train, schema, seed=cfg.split_seed)
    held_out = np.ones(len(df), dtype=bool)
    held_out[train_rows] = False
    encoded = torch.from_numpy(transformer.transform(df, dtype=np.float32, lenient=held_out))
    check_constraints(cfg.constraints, transformer.schema)
    return TableDataset(df, transformer, encoded, splits, str(cfg.path), frame_fingerprint(df), cfg.balance,
                        list(cfg.constraints), private=privacy is not None)
