"""Batches and batch streams shared by every modality: what the trainer and every family consume."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch

from genlab.core.errors import GenlabError


@dataclass
class Batch:
    # images: float32 in [0, 1], B x C x H x W; text: B x (T + 1) token windows; tables: rows; prompts: B x L token
    # ids, -1 after each prompt's end
    x: torch.Tensor
    y: torch.Tensor | None  # int64 class labels, or None for unlabelled data
    context: torch.Tensor | None = None  # text with data.token_noise: the corrupted B x T inputs
    cond: torch.Tensor | None = None  # tables with data.balance: the condition vector each row was drawn for
    mask: torch.Tensor | None = None  # text: B x T weight of each target token (chat: 1 on answers only)
    segments: torch.Tensor | None = None  # text, packed: B x T conversation index of each input token

    def to(self, device: torch.device) -> Batch:
        if self.x.device == device:
            return self
        return replace(self, **{f.name: t.to(device, non_blocking=True) for f in fields(self)
                                if (t := getattr(self, f.name)) is not None})

    def rows(self, a: int, b: int) -> Batch:
        """Rows a:b of every tensor (a micro-batch, one process's share)."""
        return replace(self, **{f.name: t[a:b] for f in fields(self) if (t := getattr(self, f.name)) is not None})


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class BatchStream:
    """Endless shuffled batches from one split, reproducible from (seed, epoch, position) alone.

    The position is part of the checkpoint, so a resumed run sees exactly the batches the original would have.
    `convert` turns stored rows into model inputs (uint8 images -> [0, 1]); `transform(x, noise)` changes a
    training batch with the run's noise generator (augmentation, binarisation).
    """

    def __init__(self, items: torch.Tensor, labels: torch.Tensor | None, batch_size: int, seed: int,
                 convert: Callable[[torch.Tensor], torch.Tensor] = _identity,
                 transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None):
        if items.shape[0] < batch_size:
            raise GenlabError(f"batch size {batch_size} is larger than the training split ({items.shape[0]} items)")
        self.items, self.labels = items, labels
        self.batch_size, self.seed = batch_size, seed
        self.convert, self.transform = convert, transform
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.items.shape[0], generator=gen)

    def next(self, noise: torch.Generator) -> Batch:
        if self.position + self.batch_size > self._order.numel():
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        idx = self._order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        x = self.convert(self.items[idx])
        if self.transform is not None:
            x = self.transform(x, noise)
        return Batch(x, None if self.labels is None else self.labels[idx])

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)


def fixed_batches(items: torch.Tensor, labels: torch.Tensor | None, batch_size: int,
                  convert: Callable[[torch.Tensor], torch.Tensor] = _identity):
    """Fixed-order batches over a whole split (validation, evaluation)."""
    for start in range(0, items.shape[0], batch_size):
        yield Batch(convert(items[start : start + batch_size]),
                    None if labels is None else labels[start : start + batch_size])


class EpochCycle:
    """Items taken k at a time from a sequence remade each epoch (`epoch_items(epoch)`: a seeded shuffle, a
    packing), running on across epoch ends; (epoch, position) is all a checkpoint stores to resume it exactly."""

    def __init__(self, epoch_items: Callable[[int], list]):
        self.epoch_items = epoch_items
        self.epoch, self.position = 0, 0
        self._items = epoch_items(0)

    def take(self, k: int) -> list:
        out: list = []
        while len(out) < k:
            if self.position >= len(self._items):
                self.epoch, self.position = self.epoch + 1, 0
                self._items = self.epoch_items(self.epoch)
            part = list(self._items[self.position: self.position + k - len(out)])
            out += part
            self.position += len(part)
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._items = self.epoch_items(self.epoch)
