"""Image datasets: uint8 N x C x H x W in memory, seeded splits, a content fingerprint, and batches for training."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.config import AugmentConfig, DataConfig
from genlab.core.batch import BatchStream, fixed_batches
from genlab.core.errors import GenlabError
from genlab.core.items import indexed_names
from genlab.core.spec import DataSpec
from genlab.core.splits import checked_split_codes, last_items, make_splits, split_codes
from genlab.core.versions import version_summary
from genlab.modalities.image.augment import augment_batch
from genlab.modalities.image.idx import labels_path_for, read_idx

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """The one conversion from stored uint8 pixels to model space: float32 in [0, 1]."""
    return images.to(torch.float32).div_(255.0)


@dataclass
class ImageDataset:
    images: torch.Tensor  # uint8 N x C x H x W
    labels: torch.Tensor | None  # int64 N
    class_names: list[str] | None
    splits: dict[str, torch.Tensor]  # split name -> int64 indices into images
    source: str
    fingerprint: str
    augment: AugmentConfig | None = None  # applied to training batches only
    version: dict | None = None  # a genlab dataset version: its manifest's summary (recorded by runs)
    item_names: list[str] | None = None  # what audit findings call each item: a relative path, `data.npz[31]`
    colour: dict | None = None  # mode (RGB | grey); folders: the files' modes and how many had transparency

    def names(self) -> list[str]:
        """Each item's name (`#31` when the loader gave none), as findings and --drop-ids use them."""
        return self.item_names or [f"#{i}" for i in range(self.images.shape[0])]

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return len(self.class_names) if self.class_names else int(self.labels.max()) + 1

    modality = "image"

    def save_artifacts(self, folder: Path) -> None:
        """Nothing: an image run needs only its weights and config to sample."""

    def spec(self) -> DataSpec:
        c, h, w = self.shape
        return DataSpec(c, h, w, self.num_classes)

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False) -> BatchStream:
        return BatchStream(self.split_images("train"), self.split_labels("train"), batch_size, seed,
                           convert=images_to_unit, transform=training_transform(self.augment, binarize))

    def validation_batches(self, batch_size: int, binarize_seed: int | None = None):
        return self.batches("val", batch_size, binarize_seed)

    def batches(self, split: str, batch_size: int, binarize_seed: int | None = None, limit: int | None = None):
        """Fixed-order batches over a split (its first `limit` images), binarised with a fixed seed if asked."""
        images, labels = self.split_images(split)[:limit], self.split_labels(split)
        return iterate_batches(images, None if labels is None else labels[:limit], batch_size, binarize_seed)

    def split_codes(self) -> np.ndarray:
        return split_codes(self.splits, self.images.shape[0])

    def split_images(self, split: str) -> torch.Tensor:
        return self.images[self.splits[split]]

    def split_labels(self, split: str) -> torch.Tensor | None:
        return None if self.labels is None else self.labels[self.splits[split]]

    def describe(self) -> dict[str, Any]:
        """Counts, shape, class balance and pixel statistics: what a person checks before training."""
        desc: dict[str, Any] = {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "num_images": int(self.images.shape[0]),
            "shape_chw": list(self.shape),
            "colour": self.colour or {"mode": "RGB" if self.shape[0] == 3 else "grey"},
            "splits": {k: int(v.numel()) for k, v in self.splits.items()},
        }
        if self.version:
            desc["version"] = self.version
        flat = self.images.reshape(self.images.shape[0], -1).to(torch.float64) / 255.0
        desc["pixels"] = {
            "mean": round(float(flat.mean()), 5),
            "std": round(float(flat.std()), 5),
            "min": round(float(flat.min()), 5),
            "max": round(float(flat.max()), 5),
            "fraction_zero": round(float((self.images == 0).double().mean()), 5),
        }
        if self.shape[0] == 3:
            desc["pixels"]["channel_mean"] = [round(float(v), 5) for v in
                                              self.images.to(torch.float64).mean((0, 2, 3)) / 255.0]
        if self.labels is not None:
            counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
            names = self.class_names or [str(i) for i in range(self.num_classes)]
            desc["classes"] = dict(zip(names, counts, strict=True))
            nonzero = [c for c in counts if c > 0]
            desc["class_imbalance_ratio"] = round(max(nonzero) / min(nonzero), 3) if nonzero else None
        return desc


def load_image_dataset(cfg: DataConfig, unreadable: list[dict] | None = None) -> ImageDataset:
    """`unreadable`: a list to collect image files that cannot be read (folder source) instead of stopping
    at the first one; what `genlab data audit` passes."""
    colour: dict[str, Any] = {}
    if cfg.source == "digits":
        images, labels, names, n_test = _load_digits()
        item_names = indexed_names("digits", images.shape[0])
    else:
        if not cfg.path:
            raise GenlabError(f"data.source={cfg.source} needs data.path (a file or folder)")
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise GenlabError(f"data path not found: {path}")
        if cfg.source == "folder":
            images, labels, names, n_test, item_names, colour = _load_folder(path, cfg, unreadable)
        elif cfg.source == "idx":
            images, labels, names, n_test, item_names = _load_idx(path, cfg)
        else:
            images, labels, names, n_test = _load_npz(path, cfg)
            item_names = indexed_names(path.name, images.shape[0])
    if cfg.limit is not None and isinstance(n_test, np.ndarray):
        raise GenlabError("data.limit does not apply to a dataset version with its own splits")
    if cfg.limit is not None:
        n_test = max(0, min(n_test, cfg.limit - (images.shape[0] - n_test))) if n_test else 0
        keep = np.arange(min(cfg.limit, images.shape[0]))
        images, labels = images[keep], None if labels is None else labels[keep]
        item_names = item_names[:len(keep)]
    if images.shape[0] == 0:
        raise GenlabError(f"dataset {cfg.source} {cfg.path or ''} is empty: no images found".rstrip())
    if labels is not None and labels.shape[0] != images.shape[0]:
        raise GenlabError(
            f"dataset {cfg.path}: {labels.shape[0]} labels for {images.shape[0]} images; the counts must match"
        )
    images_t = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    labels_t = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    fingerprint = _fingerprint(images_t, labels_t)
    if not isinstance(n_test, np.ndarray):
        n_test = last_items(cfg, images_t.shape[0], n_test)
    splits = make_splits(images_t.shape[0], n_test, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    return ImageDataset(images_t, labels_t, names, splits, cfg.source, fingerprint,
                        cfg.augment if cfg.augment.active else None,
                        version_summary(Path(cfg.path)) if cfg.source == "npz" else None, item_names,
                        {"mode": "RGB" if images_t.shape[1] == 3 else "grey", **colour})


def _fingerprint(images: torch.Tensor, labels: torch.Tensor | None) -> str:
    h = hashlib.sha256()
    h.update(repr(tuple(images.shape)).encode())
    h.update(images.numpy().tobytes())
    if labels is not None:
        h.update(labels.numpy().tobytes())
    return h.hexdigest()[:16]


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, bunch.target.astype(np.int64), [str(t) for t in bunch.target_names], 0


def _load_idx(path: Path, cfg: DataConfig):
    """A folder with train-/t10k- IDX files (t10k becomes the test split), or one images file."""
    if path.is_dir():
        found = {}
        for prefix in ("train", "t10k"):
            files = sorted(path.glob(f"{prefix}-images-idx3-ubyte*"))
            if files:
                found[prefix] = files[0]
        if "train" not in found:
            raise GenlabError(f"{path}: no train-images-idx3-ubyte[.gz] file in this folder")
        files = [found[p] for p in ("train", "t10k") if p in found]
        parts = [_read_idx_pair(f) for f in files]
        n_test = parts[1][0].shape[0] if len(parts) == 2 else 0
        images = np.concatenate([p[0] for p in parts])
        labels = None if any(p[1] is None for p in parts) else np.concatenate([p[1] for p in parts])
    else:
        files, parts = [path], [_read_idx_pair(path)]
        images, labels = parts[0]
        n_test = 0
    item_names = [name for f, p in zip(files, parts, strict=True) for name in indexed_names(f.name, p[0].shape[0])]
    return images, labels, None, n_test, item_names


def _read_idx_pair(images_path: Path):
    images = read_idx(images_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise GenlabError(f"{images_path}: expected uint8 images N x H x W, got {images.dtype} {images.shape}")
    labels_path = labels_path_for(images_path)
    labels = None
    if labels_path is not None:
        labels = read_idx(labels_path)
        if labels.ndim != 1:
            raise GenlabError(f"{labels_path}: expected a 1-d label array, got shape {labels.shape}")
        if labels.shape[0] != images.shape[0]:
            raise GenlabError(
                f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}"
            )
        labels = labels.astype(np.int64)
    return images[:, None], labels


def _load_npz(path: Path, cfg: DataConfig):
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise GenlabError(f"{path}: not a readable .npz file ({exc})") from None
    key = next((k for k in ("images", "x", "X") if k in arrays), None)
    if key is None:
        raise GenlabError(f"{path}: no 'images' array (found: {', '.join(arrays) or 'none'})")
    images = _to_nchw_uint8(arrays[key], str(path))
    labels = next((arrays[k] for k in ("labels", "y") if k in arrays), None)
    if labels is not None:
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
            raise GenlabError(f"{path}: labels must be a 1-d array of non-negative integers")
        if labels.shape[0] != images.shape[0]:
            raise GenlabError(f"{path}: {labels.shape[0]} labels for {images.shape[0]} images; the counts must match")
    if cfg.resize:
        images = _resize_all(images, cfg.resize)
    if "split" in arrays:  # a genlab dataset version: its splits travel with it (the parent's test set stays)
        return images, labels, None, checked_split_codes(arrays["split"], images.shape[0], str(path))
    return images, labels, None, 0


def _to_nchw_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise GenlabError(f"{where}: images must be N x H x W, N x H x W x C or N x C x H x W with C in (1, 3)")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise GenlabError(f"{where}: float images must be finite and in [0, 1]")
        return np.rint(arr * 255).astype(np.uint8)
    raise GenlabError(f"{where}: images must be uint8 or float in [0, 1], got {arr.dtype}")


def _load_folder(path: Path, cfg: DataConfig, unreadable: list[dict] | None = None):
    from PIL import Image, ImageColor, UnidentifiedImageError

    if not path.is_dir():
        raise GenlabError(f"data.source=folder needs a folder, got file {path}")
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    if subdirs:
        files = [(f, i) for i, d in enumerate(subdirs)
                 for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
        names = [d.name for d in subdirs]
    else:
        files = [(f, -1) for f in sorted(path.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        names = None
    if not files:
        raise GenlabError(f"{path}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    pictures, readable = [], []
    for f, label in files:
        try:
            with Image.open(f) as im:
                im.load()
                pictures.append(im.copy())
                readable.append((f, label))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            if unreadable is None:
                raise GenlabError(f"cannot read image {f}: {exc} (genlab data audit lists every unreadable "
                                  "file)") from None
            unreadable.append({"file": f.relative_to(path).as_posix(), "reason": str(exc)[:200]})
    files = readable
    if not files:
        raise GenlabError(f"{path}: none of the image files could be read")
    sizes = {p.size for p in pictures}
    if len(sizes) > 1 and not cfg.resize:
        examples = {}
        for (f, _), p in zip(files, pictures, strict=True):
            examples.setdefault(p.size, f)
        shown = "; ".join(f"{w}x{h} e.g. {f}" for (w, h), f in list(examples.items())[:3])
        raise GenlabError(f"{path}: images have mixed sizes ({shown}); set data.resize=SIZE to resize them")
    file_modes = Counter(p.mode for p in pictures)
    background = ImageColor.getrgb(cfg.background)[:3]
    flat = [flatten_alpha(p, background) for p in pictures]
    mode = "L" if all(p.mode == "L" for p in flat) else "RGB"
    arrays = []
    for p in flat:
        p = p.convert(mode)
        if cfg.resize:
            p = p.resize((cfg.resize, cfg.resize), Image.Resampling.BILINEAR)
        a = np.asarray(p, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    labels = np.array([i for _, i in files], dtype=np.int64) if names else None
    colour = {"file_modes": dict(sorted(file_modes.items())),
              "with_alpha": sum(has_alpha(p) for p in pictures), "background": list(background)}
    return np.stack(arrays), labels, names, 0, [f.relative_to(path).as_posix() for f, _ in files], colour


def has_alpha(picture) -> bool:
    return picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info


def flatten_alpha(picture, background: tuple[int, int, int] = (255, 255, 255)):
    """The one colour rule for image files: transparency (an alpha channel, or a palette / grey / RGB
    transparency entry) is alpha-composited over `background`; the result is 'L' when the file holds grey
    levels only (grey modes, or a palette of greys over a grey background) and 'RGB' otherwise."""
    from PIL import Image

    grey_background = len(set(background)) == 1
    if has_alpha(picture):
        rgba = picture.convert("RGBA")  # PIL's advice for palette transparency too
        grey = picture.mode in ("LA", "La", "L") or (picture.mode in ("P", "PA") and _all_grey(rgba))
        out = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")
        return out.convert("L") if grey and grey_background else out
    if picture.mode in ("L", "1", "I", "I;16", "F"):
        return picture.convert("L")
    if picture.mode == "P" and _all_grey(picture.convert("RGB")):
        return picture.convert("L")
    return picture.convert("RGB")


def _all_grey(picture) -> bool:
    """Every pixel's red, green and blue are equal (alpha, if any, ignored)."""
    rgb = np.asarray(picture)[..., :3]
    return bool((rgb == rgb[..., :1]).all())


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(images).float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def iterate_batches(images: torch.Tensor, labels: torch.Tensor | None, batch_size: int,
                    binarize_seed: int | None = None):
    """Fixed-order batches over a whole split (validation, evaluation); binarised with a fixed seed if asked."""
    gen = torch.Generator().manual_seed(binarize_seed) if binarize_seed is not None else None
    for batch in fixed_batches(images, labels, batch_size, images_to_unit):
        if gen is not None:
            batch.x = torch.bernoulli(batch.x, generator=gen)
        yield batch


def training_transform(augment: AugmentConfig | None, binarize: bool):
    """What changes a training batch, drawn from the run's noise generator: augmentation, then dynamic
    binarisation (pixels drawn as Bernoulli(intensity)); None when neither is asked for."""
    if augment is None and not binarize:
        return None

    def transform(x: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
        if augment is not None:
            x = augment_batch(x, augment, noise)
        return torch.bernoulli(x, generator=noise) if binarize else x

    return transform
