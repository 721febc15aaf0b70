"""Feature extractors for image metrics, chosen by name, with real-set features cached per dataset fingerprint.

- `classifier`: a small CNN trained on the run's own dataset (`genlab features train`); its penultimate
  layer gives FID/KID/precision-recall features and its softmax the Inception Score, all offline.
- `ssl`: the same CNN trained without labels (SimCLR, genlab.modalities.image.ssl), for unlabelled image sets.
- `inception`: the standard FID Inception-v3 (pytorch-fid / torch-fidelity weights), from a local file.

Trained extractors share the conv body, the training loop and the cache layout defined here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
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


def conv_features(channels: int, dim: int = 128) -> nn.Sequential:
    """Three conv blocks pooled to 3x3 and a `dim`-d ReLU layer: any image size through adaptive pooling.
    The body of both trained extractors, so their features are comparable in size and cost."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(channels, 32), *block(32, 32), nn.MaxPool2d(2, ceil_mode=True),
                         *block(32, 64), nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d(3),
                         nn.Flatten(), nn.Linear(64 * 9, dim), nn.ReLU())


def fit(model: nn.Module, loss_of: Callable[[torch.Tensor], torch.Tensor], n: int, epochs: int, batch_size: int,
        per_epoch: int | None, lr: float, seed: int, desc: str, quiet: bool) -> list[float]:
    """AdamW with a one-cycle schedule over `epochs` shuffles of `n` train images, `per_epoch` of them (all
    when None) in batches of `batch_size`; `loss_of(indices)` is the batch loss. Returns every step's loss."""
    per_epoch = min(n, per_epoch or n)
    steps_per_epoch = max(1, per_epoch // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    with tqdm(total=epochs * steps_per_epoch, disable=quiet, desc=desc) as bar:
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(steps_per_epoch):
                loss = loss_of(order[i * batch_size : (i + 1) * batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return losses


def save_trained(folder: Path, stem: str, model: nn.Module, info: dict) -> None:
    atomic_save_tensors(folder / f"{stem}.safetensors", model.state_dict())
    atomic_write_json(folder / f"{stem}.json", info)


def load_trained(folder: Path, stem: str, how: str) -> tuple[dict, dict, str]:
    """(info, state dict, short sha256 of the weights) of an extractor trained once per dataset. The hash goes
    into the extractor's name, so features cached for older weights are never reused."""
    weights = folder / f"{stem}.safetensors"
    if not weights.is_file() or not (folder / f"{stem}.json").is_file():
        raise GenlabError(f"{how} (cache: {folder})")
    return (json.loads((folder / f"{stem}.json").read_text()), load_tensors(weights),
            hashlib.sha256(weights.read_bytes()).hexdigest()[:12])


class DomainClassifier(nn.Module):
    """The shared conv body (128-d penultimate layer) and a linear class head."""

    feature_dim = 128

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = conv_features(channels, self.feature_dim)
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
        raise GenlabError("the domain classifier needs a labelled dataset (class folders, IDX labels, npz labels); "
                          "for unlabelled images use the self-supervised extractor (eval.extractor=ssl)")
    torch.manual_seed(seed)
    model = DomainClassifier(dataset.shape[0], dataset.num_classes)
    x, y = dataset.split_images("train"), dataset.split_labels("train")

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(images_to_unit(x[idx]))[1], y[idx])

    t0 = time.perf_counter()
    fit(model, loss_of, x.shape[0], epochs, batch_size, None, 3e-3, seed, "train domain classifier", quiet)
    test_x, test_y = dataset.split_images("test"), dataset.split_labels("test")
    with torch.no_grad():
        pred = torch.cat([model(images_to_unit(b))[1].argmax(1) for b in test_x.split(1000)])
    info = {"dataset_fingerprint": dataset.fingerprint, "test_accuracy": float((pred == test_y).double().mean()),
            "test_images": int(test_y.numel()), "epochs": epochs, "train_seconds": round(time.perf_counter() - t0, 1),
            "channels": dataset.shape[0], "num_classes": dataset.num_classes}
    save_trained(classifier_dir(dataset), "classifier", model, info)
    return info


class FeatureExtractor:
    """images (N x C x H x W float in [0, 1]) -> {"features": N x D, "probs": N x K or None}."""

    name: str  # names cached real features: includes a weights hash where weights are trained
    kind: str  # the registry name, recorded in metrics.json
    gives_probs = False  # class probabilities too (Inception Score, label agreement)

    @classmethod
    def for_dataset(cls, dataset: ImageDataset) -> FeatureExtractor:
        return cls(dataset)

    @classmethod
    def is_trained(cls, dataset: ImageDataset) -> bool:
        """Whether `for_dataset` can load; extractors trained per dataset say whether their weights exist."""
        return True

    @classmethod
    def train_for(cls, dataset: ImageDataset, quiet: bool = True) -> dict:
        raise GenlabError(f"the {cls.kind} feature extractor is not trained per dataset")

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


class TrainedFeatures(FeatureExtractor):
    """An extractor whose network is trained per dataset and cached in `folder(dataset)` as `stem`.safetensors /
    .json; the cached weights' hash is in `name`, so features cached for older weights are never reused."""

    stem: str
    what: str  # its name in messages
    hint: str  # how to train it, for the "not trained yet" error

    @staticmethod
    def folder(dataset: ImageDataset) -> Path:
        raise NotImplementedError

    @staticmethod
    def build(info: dict) -> nn.Module:
        raise NotImplementedError

    def __init__(self, dataset: ImageDataset):
        self.info, state, sha = load_trained(self.folder(dataset), self.stem,
                                             f"no {self.what} for dataset {dataset.fingerprint} yet; "
                                             f"{self.hint}")
        self.model = self.build(self.info)
        self.model.load_state_dict(state)
        self.model.eval()
        self.name = f"{self.kind}-{sha}"

    @classmethod
    def is_trained(cls, dataset: ImageDataset) -> bool:
        return (cls.folder(dataset) / f"{cls.stem}.json").is_file()


class ClassifierFeatures(TrainedFeatures):
    kind, stem, what = "classifier", "classifier", "domain classifier"
    hint = "run `genlab features train CONFIG` with the run's config"
    gives_probs = True
    folder = staticmethod(classifier_dir)

    @staticmethod
    def build(info: dict) -> nn.Module:
        return DomainClassifier(info["channels"], info["num_classes"])

    @classmethod
    def train_for(cls, dataset: ImageDataset, quiet: bool = True) -> dict:
        return train_domain_classifier(dataset, quiet=quiet)

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
