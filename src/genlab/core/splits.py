"""Seeded, fixed train / validation / test splits, and the split codes a dataset version stores."""

from __future__ import annotations

import numpy as np
import torch

from genlab.core.errors import GenlabError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def make_splits(n: int, n_test: int | np.ndarray, val_fraction: float, test_fraction: float,
                seed: int) -> dict[str, torch.Tensor]:
    """Seeded, fixed splits; a source's own test set (the last n_test items) stays the test split; a
    dataset version's stored split codes (an array) are used as they are."""
    if isinstance(n_test, np.ndarray):
        codes = torch.from_numpy(n_test)
        splits = {name: torch.nonzero(codes == code).flatten() for name, code in SPLIT_CODES.items()}
        if splits["train"].numel() == 0:
            raise GenlabError("this dataset version has no training items")
        return splits
    gen = torch.Generator().manual_seed(seed)
    if n_test:
        pool = torch.randperm(n - n_test, generator=gen)
        test = torch.arange(n - n_test, n)
    else:
        perm = torch.randperm(n, generator=gen)
        k = int(round(n * test_fraction))
        test, pool = perm[:k].sort().values, perm[k:]
    n_val = int(round(pool.numel() * val_fraction))
    val, train = pool[:n_val].sort().values, pool[n_val:].sort().values
    if train.numel() == 0:
        raise GenlabError(f"dataset has {n} items: too few to split into train/validation/test")
    return {"train": train, "val": val, "test": test}


def last_items(cfg, n: int, shipped: int = 0) -> int:
    """How many trailing items are the test split: data.test_last, else what the source ships (0: none)."""
    if cfg.test_last is None:
        return shipped
    if shipped:
        raise GenlabError("data.test_last: this source ships its own test split; leave test_last unset")
    if cfg.test_last >= n:
        raise GenlabError(f"data.test_last={cfg.test_last} leaves no training items of {n}")
    return cfg.test_last


def split_codes(splits: dict[str, torch.Tensor], n: int) -> np.ndarray:
    """Per item: 0 train, 1 val, 2 test (what a dataset version stores so its splits survive)."""
    codes = np.zeros(n, dtype=np.uint8)
    for name, code in SPLIT_CODES.items():
        codes[splits[name].numpy()] = code
    return codes


def checked_split_codes(split: np.ndarray, n: int, where: str) -> np.ndarray:
    if split.shape != (n,) or not np.isin(split, list(SPLIT_CODES.values())).all():
        raise GenlabError(f"{where}: 'split' must hold one code per item: 0 train, 1 val, 2 test")
    return split.astype(np.uint8)
