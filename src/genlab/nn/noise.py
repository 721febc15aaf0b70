"""Random draws for sampling that can serve several requests in one batch: with `RowNoise` each request's rows
come from its own generator, drawn in the order a call for that request alone would draw them, so batching
requests (genlab serve) does not change any request's samples."""

from __future__ import annotations

import torch


class RowNoise:
    def __init__(self, parts: list[tuple[int, torch.Generator]]):
        self.parts = parts  # (rows, generator) per request, in batch order

    @property
    def rows(self) -> int:
        return sum(n for n, _ in self.parts)


Noise = torch.Generator | RowNoise | None


def randn(shape: tuple[int, ...], noise: Noise, dtype: torch.dtype | None = None) -> torch.Tensor:
    """torch.randn(shape) from a generator, or row block by row block from a RowNoise."""
    if isinstance(noise, RowNoise):
        _check(shape, noise)
        return torch.cat([torch.randn((n, *shape[1:]), generator=g, dtype=dtype) for n, g in noise.parts])
    return torch.randn(shape, generator=noise, dtype=dtype)


def randint(high: int, shape: tuple[int, ...], noise: Noise) -> torch.Tensor:
    if isinstance(noise, RowNoise):
        _check(shape, noise)
        return torch.cat([torch.randint(high, (n, *shape[1:]), generator=g) for n, g in noise.parts])
    return torch.randint(high, shape, generator=noise)


def _check(shape: tuple[int, ...], noise: RowNoise) -> None:
    if shape[0] != noise.rows:
        raise ValueError(f"a draw of {shape[0]} rows from RowNoise holding {noise.rows}")
