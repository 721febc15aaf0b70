"""Image samples: drawn in batches from a family's `sample`, written as a PNG grid or an .npz array."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_write_bytes
from genlab.core.validate import sample_count

MAX_SAMPLES = 100_000  # draw larger sets in several calls


def generate_images(model, n: int, label: int | None = None, seed: int = 0, family_options=None,
                    batch_size: int = 500) -> torch.Tensor:
    """n samples as float [0, 1] images; the same seed gives the same images. `family_options`: the family's
    sampling options dataclass (None fields keep the run's defaults)."""
    sample_count(n, MAX_SAMPLES)
    options = {k: v for k, v in asdict(family_options).items() if v is not None} if family_options else {}
    noise = torch.Generator().manual_seed(seed)
    labels = None if label is None else torch.tensor([label])
    parts = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        parts.append(model.sample(m, None if labels is None else labels.expand(m), noise, **options))
    return torch.cat(parts)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def image_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """N x C x H x W float [0, 1] -> one H' x W' (x 3) uint8 picture."""
    arr = to_uint8(images)
    n, c, h, w = arr.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    grid = np.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = arr[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def png_bytes(picture: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    im = Image.fromarray(picture)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def save_samples(images: torch.Tensor, out: str | Path, labels: torch.Tensor | None = None,
                 ncol: int | None = None) -> Path:
    out = Path(out)
    if out.suffix == ".png":
        atomic_write_bytes(out, png_bytes(image_grid(images, ncol), scale=max(1, 64 // images.shape[-1])))
    elif out.suffix == ".npz":
        buf = io.BytesIO()
        arrays = {"images": to_uint8(images)}
        if labels is not None:
            arrays["labels"] = labels.numpy()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(out, buf.getvalue())
    else:
        raise GenlabError(f"--out must end in .png or .npz, got {out.name}")
    return out
