"""Image editing with trained runs, for `genlab edit` and the /edits endpoints: reading user images and masks, and
inpaint / img2img / transfer on loaded runs (the models do the work: Diffusion.inpaint, .img2img, .invert,
.decode_from_noise; CycleGAN.transfer; any other family raises one clear error).

Conventions (the user-facing ones; the models' own masks are 1 = KNOWN):
* Images are read with PIL through `flatten_alpha` (transparency composited over white, like the training data),
  converted to the run's colour mode (grey or RGB) and must be the run's size unless `resize` is asked for.
* A mask file is WHITE where the image is to be filled (pixels >= 128 after flattening, grey) and black where it is
  kept; it must be the image's size (or is resized with nearest neighbour under `resize`).
* Mask shapes: `centre:F` a centred square covering fraction F of the area, `box:x0,y0,x1,y1` pixel corners
  (x1, y1 exclusive), `strokes:SEED` a few thick random line segments drawn from SEED.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import GenlabError

MAX_PIXELS = 512 * 512  # the largest image or mask read, before any resize (decompression bombs stop here too)


def _open(data: bytes, what: str, max_pixels: int):
    from PIL import Image, UnidentifiedImageError

    try:
        picture = Image.open(io.BytesIO(data))
        w, h = picture.size
        if w * h > max_pixels:
            raise GenlabError(f"{what} is {w}x{h} pixels; at most {max_pixels} pixels are accepted")
        picture.load()
    except GenlabError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise GenlabError(f"{what} is not a readable image ({type(exc).__name__}: {str(exc)[:120]})") from None
    return picture


def read_image(data: bytes, channels: int, size: tuple[int, int], resize: bool = False, what: str = "the image",
               max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """One image file's bytes as a float 1 x C x H x W tensor in [0, 1] for a run of `channels` and `size` (H, W)."""
    from PIL import Image

    from genlab.modalities.image.data import flatten_alpha

    picture = flatten_alpha(_open(data, what, max_pixels)).convert("L" if channels == 1 else "RGB")
    h, w = size
    if picture.size != (w, h):
        if not resize:
            raise GenlabError(f"{what} is {picture.width}x{picture.height} pixels; the run's images are {w}x{h} "
                              "(resize it, or pass --resize / \"resize\": true)")
        picture = picture.resize((w, h), Image.Resampling.BILINEAR)
    a = np.asarray(picture, dtype=np.float32) / 255
    return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())[None]


def read_mask(data: bytes, size: tuple[int, int], resize: bool = False, what: str = "the mask",
              max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """A mask file (white = fill) as the models' 1 x 1 x H x W mask, 1 = KNOWN."""
    from PIL import Image

    from genlab.modalities.image.data import flatten_alpha

    picture = flatten_alpha(_open(data, what, max_pixels)).convert("L")
    h, w = size
    if picture.size != (w, h):
        if not resize:
            raise GenlabError(f"{what} is {picture.width}x{picture.height} pixels; it must match the image "
                              f"({w}x{h})")
        picture = picture.resize((w, h), Image.Resampling.NEAREST)
    fill = np.asarray(picture) >= 128
    if fill.all() or not fill.any():
        raise GenlabError(f"{what} is all {'white' if fill.all() else 'black'}: it must be white where the image "
                          "is to be filled and black where it is kept")
    return torch.from_numpy(~fill).float()[None, None]


def shape_mask(spec: str, size: tuple[int, int]) -> torch.Tensor:
    """A mask from `centre:F`, `box:x0,y0,x1,y1` or `strokes:SEED`, as the models' 1 x 1 x H x W mask, 1 = KNOWN."""
    from PIL import Image, ImageDraw

    h, w = size
    kind, _, arg = spec.partition(":")
    fill = np.zeros((h, w), bool)
    try:
        if kind == "centre" or kind == "center":
            frac = float(arg)
            if not 0 < frac < 1:
                raise ValueError("the fraction must be between 0 and 1")
            side = max(1, min(h, w, round(float(np.sqrt(frac * h * w)))))
            top, left = (h - side) // 2, (w - side) // 2
            fill[top:top + side, left:left + side] = True
        elif kind == "box":
            x0, y0, x1, y1 = (int(v) for v in arg.split(","))
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise ValueError(f"need 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
            fill[y0:y1, x0:x1] = True
        elif kind == "strokes":
            rng = np.random.default_rng(int(arg))
            picture = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(picture)
            width = max(1, min(h, w) // 8)
            for _ in range(int(rng.integers(2, 5))):
                x0, x1 = rng.uniform(0, w, 2)
                y0, y1 = rng.uniform(0, h, 2)
                draw.line([(float(x0), float(y0)), (float(x1), float(y1))], fill=255, width=width)
            fill = np.asarray(picture) >= 128
        else:
            raise ValueError("unknown shape")
    except ValueError as exc:
        raise GenlabError(f"mask shape {spec!r}: {exc}; use centre:FRACTION, box:x0,y0,x1,y1 or strokes:SEED") from None
    if fill.all() or not fill.any():
        raise GenlabError(f"mask shape {spec!r} covers {'every' if fill.any() else 'no'} pixel")
    return torch.from_numpy(~fill).float()[None, None]


def image_size(run) -> tuple[int, tuple[int, int]]:
    spec = run.model.spec
    return spec.channels, (spec.height, spec.width)


def inpaint(run, images: torch.Tensor, known: torch.Tensor, label: int | None = None, **options) -> torch.Tensor:
    """Inpaint `images` with a run; `known`: 1 = kept (see the models' `inpaint` for the options)."""
    return run.model.inpaint(images, known, _labels(label), **_given(options))


def img2img(run, images: torch.Tensor, strength: float, label: int | None = None, **options) -> torch.Tensor:
    return run.model.img2img(images, strength, _labels(label), **_given(options))


def transfer(run, images: torch.Tensor, to=None, direction: str = "a2b", steps: int | None = None,
             label: int | None = None, to_label: int | None = None, refine: int = 0) -> torch.Tensor:
    """Translate `images`: with one run, its own `transfer` (cyclegan, `direction` a2b or b2a); with a second run
    `to`, DDIM inversion in `run` (domain A, `label`) then deterministic decoding in `to` (domain B, `to_label`),
    both diffusion runs with the same noise schedule and the same U-Net input shape."""
    if to is None:
        if label is not None or to_label is not None or steps is not None:
            raise GenlabError("--label, --to-label and --steps apply to transfer between two diffusion runs (--to)")
        return run.model.transfer(images, direction)
    a, b = run.model, to.model
    x_t = a.invert(images, _labels(label), steps, refine)
    sa, sb = getattr(a, "schedule", None), getattr(b, "schedule", None)
    if sb is None:
        b.decode_from_noise(x_t)  # the family's own error
    if not torch.equal(sa.alphas_cumprod, sb.alphas_cumprod) or tuple(a.shape) != tuple(b.shape):
        raise GenlabError("transfer between two diffusion runs needs the same noise schedule (model.schedule, "
                          f"model.timesteps) and the same {'latent' if a.latent else 'image'} shape in both "
                          f"({run.paths.root.name}: {a.config.schedule} {a.schedule.timesteps}, "
                          f"{'x'.join(map(str, a.shape))}; {to.paths.root.name}: {b.config.schedule} "
                          f"{b.schedule.timesteps}, {'x'.join(map(str, b.shape))})")
    return b.decode_from_noise(x_t, _labels(to_label), steps)


def _labels(label: int | None):
    return None if label is None else torch.tensor([label])


def _given(options: dict) -> dict:
    return {k: v for k, v in options.items() if v is not None}


def image_png(image: torch.Tensor) -> bytes:
    """One 1 x C x H x W (or C x H x W) [0, 1] image as PNG bytes, at its own size."""
    from genlab.modalities.image.samples import png_bytes, to_uint8

    arr = to_uint8(image.reshape(-1, *image.shape[-3:])[:1].cpu())[0]
    return png_bytes(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))


def image_files(folder: Path) -> list[Path]:
    from genlab.modalities.image.data import IMAGE_SUFFIXES

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GenlabError(f"{folder} holds no image files")
    return files
