"""Feature extractors for image metrics, chosen by name, with real-set features cached per dataset fingerprint.

- `classifier`: a small CNN trained on the run's own dataset (`genlab features train`); its penultimate
  layer gives FID/KID/precision-recall features and its softmax the Inception Score, all offline.
- `inception`: the standard FID Inception-v3 (pytorch-fid / torch-fidelity weights), from a local file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_save_tensors, atomic_write_json, load_tensors
from genlab.modalities.image.data import ImageDataset, images_to_unit


def cache_root() -> Path:
    """$GENLAB_CACHE, else ~/.cache/genlab: classifier weights and real-set features, never committed."""
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab"))


class DomainClassifier(nn.Module):
    """Three conv blocks and a 128-d penultimate layer; works for any image size through adaptive pooling."""

    feature_dim = 128

    def __init__(self, channels: int, num_classes: int):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(*block(channels, 32), *block(32, 32), nn.MaxPool2d(2, ceil_mode=True),
                                  *block(32, 64), nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d(3),
                                  nn.Flatten(), nn.Linear(64 * 9, self.feature_dim), nn.ReLU())
        self.head = nn.Linear(self.feature_dim, num_classes)
        self.dropout = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features, logits) for images in [0, 1]."""
        h = self.body(x * 2 - 1)
        return h, self.head(self.dropout(h))


def classifier_dir(dataset: ImageDataset) -> Path:
    return cache_root() / "classifiers" / dataset.fingerprint


def train_domain_classifier(dataset: ImageDataset, epochs: int = 4, batch_size: int = 128, seed: int = 0,
                            quiet: bool = True) -> dict:
    """Train the domain classifier on the train split, measure it on the test split, cache it."""
    if dataset.labels is None:
        raise GenlabError("the domain classifier needs a labelled dataset (class folders, IDX labels, npz labels)")
    torch.manual_seed(seed)
    model = DomainClassifier(dataset.shape[0], dataset.num_classes)
    x, y = dataset.split_images("train"), dataset.split_labels("train")
    steps_per_epoch = max(1, x.shape[0] // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    with tqdm(total=epochs * steps_per_epoch, disable=quiet, desc="train domain classifier") as bar:
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            for i in range(steps_per_epoch):
                idx = order[i * batch_size : (i + 1) * batch_size]
                _, logits = model(images_to_unit(x[idx]))
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
    model.eval()
    test_x, test_y = dataset.split_images("test"), dataset.split_labels("test")
    with torch.no_grad():
        pred = torch.cat([model(images_to_unit(b))[1].argmax(1) for b in test_x.split(1000)])
    info = {"dataset_fingerprint": dataset.fingerprint, "test_accuracy": float((pred == test_y).double().mean()),
            "test_images": int(test_y.numel()), "epochs": epochs, "train_seconds": round(time.perf_counter() - t0, 1),
            "channels": dataset.shape[0], "num_classes": dataset.num_classes}
    out = classifier_dir(dataset)
    atomic_save_tensors(out / "classifier.safetensors", model.state_dict())
    atomic_write_json(out / "classifier.json", info)
    return info


class FeatureExtractor:
    """images (N x C x H x W float in [0, 1]) -> {"features": N x D, "probs": N x K or None}."""

    name: str

    @classmethod
    def for_dataset(cls, dataset: ImageDataset) -> FeatureExtractor:
        return cls(dataset)

    def extract(self, images: torch.Tensor, quiet: bool = True, batch_size: int = 500) -> dict[str, torch.Tensor]:
        feats, probs = [], []
        with torch.inference_mode():
            for start in tqdm(range(0, images.shape[0], batch_size), disable=quiet, desc=f"features ({self.name})"):
                f, p = self._batch(images[start : start + batch_size])
                feats.append(f.float())
                if p is not None:
                    probs.append(p.double())
        return {"features": torch.cat(feats), "probs": torch.cat(probs) if probs else None}

    def _batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class ClassifierFeatures(FeatureExtractor):
    def __init__(self, dataset: ImageDataset):
        folder = classifier_dir(dataset)
        if not (folder / "classifier.safetensors").is_file():
            raise GenlabError(f"no domain classifier for dataset {dataset.fingerprint} yet; run "
                              f"`genlab features train CONFIG` with the run's config (cache: {folder})")
        self.info = json.loads((folder / "classifier.json").read_text())
        self.model = DomainClassifier(self.info["channels"], self.info["num_classes"])
        weights = folder / "classifier.safetensors"
        self.model.load_state_dict(load_tensors(weights))
        self.model.eval()
        # The weights' hash is in the name, so features cached for an older classifier are never reused.
        self.name = f"classifier-{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}"

    def _batch(self, images):
        feats, logits = self.model(images)
        return feats, logits.double().softmax(1)  # float64: probabilities that sum to 1 (IS, label agreement)


def get_extractor(name: str, dataset: ImageDataset) -> FeatureExtractor:
    """The extractor registered as `name` (genlab.registry, kind "extractor") for this dataset."""
    from genlab.registry import lookup

    return lookup("extractor", name).for_dataset(dataset)


def real_features(dataset: ImageDataset, extractor: FeatureExtractor, split: str = "test",
                  quiet: bool = True) -> dict[str, torch.Tensor]:
    """Features of a real split, computed once per (dataset fingerprint, extractor, split) and cached."""
    path = cache_root() / "features" / dataset.fingerprint / f"{extractor.name}-{split}.safetensors"
    if path.is_file():
        cached = load_tensors(path)
        return {"features": cached["features"], "probs": cached.get("probs")}
    out = extractor.extract(images_to_unit(dataset.split_images(split)), quiet=quiet)
    atomic_save_tensors(path, {k: v for k, v in out.items() if v is not None})
    return out
