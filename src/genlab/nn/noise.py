"""Random draws for training and sampling. Draws always come from CPU generators (checkpointed with the run,
identical on any hardware) and are then moved to `device`, so a run resumed on a GPU, or sampled on one, draws
what it would on the CPU. With `RowNoise` each request's rows come from its own generator, drawn in the order
a call for that request alone would draw them, so batching requests (genlab serve) does not change any
request's samples."""

from __future__ import annotations

import torch


class RowNoise:
    def __init__(self, parts: list[tuple[int, torch.Generator]]):
        self.parts = parts  # (rows, generator) per request, in batch order

    @property
    def rows(self) -> int:
        return sum(n for n, _ in self.parts)


Noise = torch.Generator | RowNoise | None


def randn(shape: tuple[int, ...], noise: Noise, dtype: torch.dtype | None = None,
          device: torch.device | str | None = None) -> torch.Tensor:
    """torch.randn(shape) from a generator, or row block by row block from a RowNoise."""
    if isinstance(noise, RowNoise):
        _check(shape, noise)
        out = torch.cat([torch.randn((n, *shape[1:]), generator=g, dtype=dtype) for n, g in noise.parts])
    else:
        out = torch.randn(shape, generator=noise, dtype=dtype)
    return out.to(device) if device is not None else out


def randint(high: int, shape: tuple[int, ...], noise: Noise, device: torch.device | str | None = None) -> torch.Tensor:
    if isinstance(noise, RowNoise):
        _check(shape, noise)
        out = torch.cat([torch.randint(high, (n, *shape[1:]), generator=g) for n, g in noise.parts])
    else:
        out = torch.randint(high, shape, generator=noise)
    return out.to(device) if device is not None else out


def rand(shape: tuple[int, ...], noise: torch.Generator | None,
         device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform [0, 1) draws from a CPU generator, moved to `device`."""
    out = torch.rand(shape, generator=noise)
    return out.to(device) if device is not None else out


def _check(shape: tuple[int, ...], noise: RowNoise) -> None:
    if shape[0] != noise.rows:
        raise ValueError(f"a draw of {shape[0]} rows from RowNoise holding {noise.rows}")
