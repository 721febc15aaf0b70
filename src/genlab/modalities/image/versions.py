"""Immutable dataset versions: a folder with data.npz (images, labels and each image's split, so the parent's
test set stays the test set) and manifest.json (the parent's fingerprint, each operation with its parameters
and the ids it touched, the new fingerprint). Train on one with data.source=npz data.path=VERSION/data.npz;
the run's dataset.json records the fingerprint it trained on.

Three producers: `clean_version` (the audit's fixes), `degraded_version` (controlled damage for studies of
what data quality is worth: label noise, duplicates, subsampling, always within the training split) and
`augmented_version` (augmented copies of the training images).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch

from genlab.config import AugmentConfig, DataConfig
from genlab.core.errors import GenlabError
from genlab.core.items import drop_operation, read_drop_ids
from genlab.core.runs import atomic_write_bytes, atomic_write_json
from genlab.core.versions import new_version_folder, refuse_existing
from genlab.modalities.image.audit import audit_images, check_operations, clean_images, relabelled
from genlab.modalities.image.augment import augment_batch
from genlab.modalities.image.data import ImageDataset, images_to_unit, load_image_dataset


def version_config(folder: str | Path) -> DataConfig:
    return DataConfig(source="npz", path=str(Path(folder) / "data.npz"))


def write_version(out: str | Path, parent: ImageDataset, images: torch.Tensor, labels: torch.Tensor | None,
                  split: np.ndarray, operations: list[dict]) -> dict:
    """Write `images` / `labels` with their split codes (0 train, 1 val, 2 test) as a new version derived from
    `parent`; never overwrites, and a version appears whole or not at all. Returns the manifest."""
    arrays = {"images": images.numpy(), "split": split.astype(np.uint8)}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with new_version_folder(out) as tmp:
        atomic_write_bytes(tmp / "data.npz", buf.getvalue())
        child = load_image_dataset(version_config(tmp))
        manifest = {"parent": {"source": parent.source, "fingerprint": parent.fingerprint,
                               "items": int(parent.images.shape[0])},
                    "operations": operations, "fingerprint": child.fingerprint, "items": int(images.shape[0]),
                    "splits": {name: int(ids.numel()) for name, ids in child.splits.items()}}
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def _subset(out: str | Path, parent: ImageDataset, keep: torch.Tensor, labels: torch.Tensor | None,
            operations: list[dict]) -> dict:
    """A version holding rows `keep` of `parent` (labels already indexed by keep)."""
    return write_version(out, parent, parent.images[keep], labels, parent.split_codes()[keep.numpy()], operations)


def clean_version(data_cfg: DataConfig | ImageDataset, operations: list[str], out: str | Path,
                  drop_ids: str | Path | None = None) -> dict:
    """Audit the dataset, apply `operations` (audit.CLEAN_OPERATIONS) to its training and validation items
    (the test split is never touched), drop the items the file `drop_ids` lists (names as the audit prints
    them, or ids; no audit is run for that alone) and write the result as a new version. Returns the manifest."""
    if operations or drop_ids is None:
        check_operations(operations)
    refuse_existing(Path(out))  # before the audit's minutes of work
    ds = data_cfg if isinstance(data_cfg, ImageDataset) else load_image_dataset(data_cfg)
    listed = None if drop_ids is None else read_drop_ids(drop_ids, ds.names(), ds.images.shape[0])
    if "relabel" in operations and ds.labels is None:
        raise GenlabError("relabel needs a labelled dataset")
    test = set(ds.splits["test"].tolist())
    labels = ds.labels
    ops: list[dict] = []
    removed: dict[str, list[int]] = {}
    if operations:
        report = audit_images(ds.images, ds.labels, ds.class_names, listed=None,
                              find_label_issues=bool({"labels", "relabel"} & set(operations)))
        _, removed = clean_images(ds.images, ds.labels, report, operations, protected=test)
    for op in operations:
        if op == "relabel":
            labels, changes = relabelled(ds.labels, report, protected=test)
            ops.append({"op": op, "count": len(changes), "changed": [list(c) for c in changes]})
        else:
            ops.append({"op": op, "removed_ids": removed[op], "count": len(removed[op])})
    if listed is not None:
        ops.append(drop_operation(drop_ids, listed, test, set().union(*removed.values()), ds.item_names))
    gone = {i for o in ops for i in o.get("removed_ids", [])}
    keep = torch.tensor(sorted(set(range(ds.images.shape[0])) - gone), dtype=torch.long)
    return _subset(out, ds, keep, None if labels is None else labels[keep], ops)


def degraded_version(parent: ImageDataset, out: str | Path, label_noise: float = 0.0, duplicates: float = 0.0,
                     subsample: float = 1.0, seed: int = 0) -> dict:
    """Damage the training split on purpose, reproducibly (`seed`), and write it as a version:
    `subsample` keeps that fraction of training items (stratified by class when labelled); `duplicates`
    replaces that fraction of the remaining training items with exact copies of others (same size, fewer
    distinct images); `label_noise` gives that fraction of training items a different class, uniformly.
    Validation and test items are untouched. The manifest lists every id changed."""
    for name, value in (("label_noise", label_noise), ("duplicates", duplicates)):
        if not 0.0 <= value < 1.0:
            raise GenlabError(f"{name} must be in [0, 1), got {value}")
    if not 0.0 < subsample <= 1.0:
        raise GenlabError(f"subsample must be in (0, 1], got {subsample}")
    if label_noise and (parent.labels is None or parent.num_classes < 2):
        raise GenlabError("label noise needs a labelled dataset with at least 2 classes")
    rng = np.random.default_rng(seed)
    train = parent.splits["train"].numpy()
    labels = None if parent.labels is None else parent.labels.clone()
    ops: list[dict] = []
    if subsample < 1.0:
        groups = [train] if labels is None else [train[labels[train].numpy() == c] for c in range(parent.num_classes)]
        kept = np.sort(np.concatenate([rng.choice(g, max(1, round(len(g) * subsample)), replace=False)
                                       for g in groups if len(g)]))
        ops.append({"op": "subsample", "fraction": subsample, "seed": seed, "count": int(len(train) - len(kept)),
                    "removed_ids": np.setdiff1d(train, kept).tolist()})
        train = kept
    rows = np.arange(parent.images.shape[0])
    if duplicates:
        k = round(len(train) * duplicates)
        replaced = np.sort(rng.choice(train, k, replace=False))
        sources = rng.choice(np.setdiff1d(train, replaced), k, replace=True)
        rows[replaced] = sources
        ops.append({"op": "duplicate", "fraction": duplicates, "seed": seed, "count": int(k),
                    "replaced_ids": replaced.tolist(), "copied_from": sources.tolist()})
    if labels is not None:
        labels = labels[torch.from_numpy(rows)]
    if label_noise:
        k = round(len(train) * label_noise)
        flipped = np.sort(rng.choice(train, k, replace=False))
        shift = torch.from_numpy(rng.integers(1, parent.num_classes, k))
        labels[flipped] = (labels[flipped] + shift) % parent.num_classes
        ops.append({"op": "label-noise", "fraction": label_noise, "seed": seed, "count": int(k),
                    "flipped_ids": flipped.tolist()})
    keep = torch.from_numpy(np.sort(np.concatenate([train, parent.splits["val"].numpy(),
                                                    parent.splits["test"].numpy()])))
    view = ImageDataset(parent.images[torch.from_numpy(rows)], labels, parent.class_names, parent.splits,
                        parent.source, parent.fingerprint)
    return _subset(out, view, keep, None if labels is None else labels[keep], ops)


def augmented_version(parent: ImageDataset, out: str | Path, augment: AugmentConfig, copies: int = 1,
                      seed: int = 0) -> dict:
    """Add `copies` augmented copies of every training image (same label) to the training split and write
    the result as a version; validation and test are untouched. For on-the-fly augmentation while training,
    set data.augment.* in the recipe instead."""
    if copies < 1 or not augment.active:
        raise GenlabError("an augmented version needs copies >= 1 and at least one data.augment.* setting")
    train = parent.splits["train"]
    gen = torch.Generator().manual_seed(seed)
    made = [torch.cat([(augment_batch(images_to_unit(chunk), augment, gen) * 255).round().to(torch.uint8)
                       for chunk in parent.images[train].split(1000)]) for _ in range(copies)]
    images = torch.cat([parent.images, *made])
    labels = None if parent.labels is None else torch.cat([parent.labels, *[parent.labels[train]] * copies])
    split = np.concatenate([parent.split_codes(), np.zeros(copies * train.numel(), dtype=np.uint8)])
    op = {"op": "augment", "copies": copies, "seed": seed, "count": int(copies * train.numel()),
          "settings": dataclasses.asdict(augment), "source_ids": train.tolist()}
    return write_version(out, parent, images, labels, split, [op])
