"""The two contracts the layers above rely on: a Dataset (what the trainer and families read) and a Modality (what a
kind of data needs end to end). The CLI, the server, the evaluator and the pipeline talk to these, never to a type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from genlab.core.batch import Batch
from genlab.core.spec import DataSpec


class Dataset(Protocol):
    modality: str  # the registry name of its modality
    fingerprint: str  # content hash: a run refuses data that changed under it
    splits: dict  # split name -> the items in it

    def spec(self) -> DataSpec: ...

    def describe(self) -> dict: ...

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False) -> Any:
        """Endless, resumable training batches: `next(noise)`, `state()`, `load_state(state)`."""

    def validation_batches(self, batch_size: int, binarize_seed: int | None = None) -> Iterator[Batch]: ...

    def batches(self, split: str, batch_size: int, binarize_seed: int | None = None,
                limit: int | None = None) -> Iterator[Batch]: ...

    def save_artifacts(self, folder: Path) -> None:
        """Write what sampling needs besides the weights (a tokenizer, a table transform) into a run."""


class Modality(Protocol):
    name: str
    sources: tuple[str, ...]  # the data.source values its loaders read
    eval_options: type  # dataclass: the `eval.*` keys of its runs
    sample_options: type  # dataclass: options of one sampling call every family of the modality takes
    output_suffixes: tuple[str, ...]  # what `genlab sample --out` may write
    model_noun: str  # what a run of it is, in messages: "a language model"
    endpoint: str  # its HTTP endpoint: POST /v1/models/NAME/<endpoint>, or this path when it starts with /
    max_samples: int  # the most samples one generate call returns (`genlab sample --n` checks it first)
    folder_contents: str | None  # what a folder of its data holds ("IDX files, images"), for error messages

    def check_data(self, data: Any) -> None:
        """Refuse data.* settings that do not apply to this kind of data (one clear GenlabError)."""

    def load(self, data: Any, run_dir: Path | None = None) -> Dataset: ...

    def infer(self, path: Path) -> dict | None:
        """data.* settings when this modality reads `path`, else None."""

    def audit(self, data: Any, out: Path, eval_options: Any, quiet: bool) -> dict:
        """Write OUT/audit.json and OUT/audit.html; return the headline counts."""

    def clean(self, data: Any, operations: list[str], out: Path, drop_ids: Path | None = None) -> dict:
        """Write a new dataset version without the findings `operations` name and the items the file `drop_ids`
        lists (names as the audit prints them, or ids); the test split is never touched. Return its manifest."""

    def generate(self, run: Any, n: int, seed: int, options: Any, family_options: Any) -> Any:
        """n samples of the run, in the modality's own type (images, texts, rows)."""

    def write_samples(self, run: Any, samples: Any, out: Path, options: Any) -> None: ...

    def print_samples(self, run: Any, n: int, seed: int, options: Any, family_options: Any, echo: Any) -> None:
        """`genlab sample` without --out: stream to the terminal, or one clear error asking for --out."""

    def evaluate(self, run: Any, options: Any, quiet: bool) -> dict:
        """Every metric that applies to the run beyond the family's likelihood, with "timings_seconds"."""

    def headline(self, metrics: dict) -> dict:
        """The few figures a person reads first."""

    def add_routes(self, app: Any, server: Any) -> None:
        """Its HTTP endpoints on a FastAPI app; `server` gives models, keys, limits and metrics."""
