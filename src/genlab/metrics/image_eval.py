"""Image metrics for a run: features extracted once, real-set features and statistics cached, every
requested metric reported as a value (with sample counts and seconds) or as an explicit error."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import torch

from genlab.data.images import ImageDataset
from genlab.errors import GenlabError
from genlab.metrics import image
from genlab.metrics.features import (
    ClassifierFeatures,
    FeatureExtractor,
    cache_root,
    classifier_dir,
    get_extractor,
    real_features,
    train_domain_classifier,
)
from genlab.runs import atomic_save_tensors, load_tensors


def extractor_for(dataset: ImageDataset, name: str | FeatureExtractor, train_if_missing: bool,
                  quiet: bool) -> FeatureExtractor:
    """The named extractor (training the domain classifier first when asked); an instance passes through."""
    if isinstance(name, FeatureExtractor):
        return name
    if name == "classifier" and train_if_missing and not (classifier_dir(dataset) / "classifier.json").is_file():
        if not quiet:
            print(f"no domain classifier cached for dataset {dataset.fingerprint}: training one", flush=True)
        train_domain_classifier(dataset, quiet=quiet)
    return get_extractor(name, dataset)


def extractor_kind(extractor: str | FeatureExtractor) -> str:
    if isinstance(extractor, str):
        return extractor
    return "classifier" if isinstance(extractor, ClassifierFeatures) else extractor.name


def real_stats(dataset: ImageDataset, extractor: FeatureExtractor, feats: torch.Tensor) -> image.GaussianStats:
    """Gaussian statistics of the real test features with their square-root factor, cached on disk."""
    path = cache_root() / "features" / dataset.fingerprint / f"{extractor.name}-test-stats.safetensors"
    if path.is_file():
        t = load_tensors(path)
        return image.GaussianStats(t["mu"], t["sigma"], int(t["n"]), t["sqrt_sigma"])
    stats = image.GaussianStats.from_features(feats)
    atomic_save_tensors(path, {"mu": stats.mu, "sigma": stats.sigma, "n": torch.tensor(stats.n),
                               "sqrt_sigma": stats.sqrt_sigma()})
    return stats


def compute_image_metrics(dataset: ImageDataset, samples: torch.Tensor, extractor_name: str | FeatureExtractor,
                          metrics: list[str],
                          train_classifier: bool = True, quiet: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"extractor": extractor_kind(extractor_name)}
    try:
        extractor = extractor_for(dataset, extractor_name, train_classifier, quiet)
    except GenlabError as exc:
        return {**out, **{m: {"error": str(exc)} for m in metrics}}
    if isinstance(extractor, ClassifierFeatures):
        out["classifier_test_accuracy"] = extractor.info["test_accuracy"]
    t0 = time.perf_counter()
    real = real_features(dataset, extractor, "test", quiet)
    out["real_features_sha"] = hashlib.sha256(real["features"].numpy().tobytes()).hexdigest()[:16]
    fake = extractor.extract(samples, quiet=quiet)
    out["feature_seconds"] = round(time.perf_counter() - t0, 3)
    n_real, n_fake = int(real["features"].shape[0]), int(samples.shape[0])
    if not torch.isfinite(samples).all():
        bad = int((~torch.isfinite(samples.flatten(1))).any(1).sum())
        return {**out, **{m: {"error": f"{bad} of {n_fake} samples contain NaN/inf pixels"} for m in metrics}}

    def fid():
        value, notes = image.frechet_distance(real_stats(dataset, extractor, real["features"]),
                                              image.GaussianStats.from_features(fake["features"]))
        return {"value": value, **({"notes": notes} if notes else {})}

    def kid():
        mean, std = image.kid(real["features"], fake["features"])
        return {"mean": mean, "std": std}

    def inception_score():
        if fake["probs"] is None:
            raise ValueError("this extractor gives no class probabilities")
        mean, std = image.inception_score(fake["probs"])
        return {"mean": mean, "std": std, "real_test_mean": image.inception_score(real["probs"])[0]}

    # k-NN manifolds compare like with like: as many generated as real features (Kynkaanniemi et al.).
    fake_knn = fake["features"][:n_real]

    def precision_recall():
        p, r = image.precision_recall(real["features"], fake_knn)
        return {"precision": p, "recall": r}

    def density_coverage():
        d, c = image.density_coverage(real["features"], fake_knn)
        return {"density": d, "coverage": c}

    table = {"fid": fid, "kid": kid, "inception_score": inception_score, "precision_recall": precision_recall,
             "density_coverage": density_coverage}
    for name in metrics:
        t0 = time.perf_counter()
        try:
            result = table[name]()
        except (ValueError, RuntimeError) as exc:
            result = {"error": str(exc)}
        used = min(n_fake, n_real) if name in ("precision_recall", "density_coverage") else n_fake
        out[name] = {**result, "n_real": n_real, "n_fake": used, "seconds": round(time.perf_counter() - t0, 3)}
    return out


def label_agreement(dataset: ImageDataset, samples: torch.Tensor, labels: torch.Tensor,
                    extractor_name: str | FeatureExtractor,
                    train_classifier: bool = True, quiet: bool = True) -> dict[str, Any]:
    """For class-conditional samples: how often the domain classifier predicts the requested label."""
    if extractor_kind(extractor_name) != "classifier":
        return {"error": "label agreement needs the domain classifier (eval.extractor=classifier)"}
    try:
        extractor = extractor_for(dataset, extractor_name, train_classifier, quiet)
    except GenlabError as exc:
        return {"error": str(exc)}
    t0 = time.perf_counter()
    predicted = extractor.extract(samples, quiet=quiet)["probs"].argmax(1)
    per_class = [float((predicted[labels == c] == c).double().mean()) for c in range(dataset.num_classes)]
    return {"accuracy": float((predicted == labels).double().mean()), "per_class": per_class,
            "classifier_test_accuracy": extractor.info["test_accuracy"], "n": int(labels.numel()),
            "seconds": round(time.perf_counter() - t0, 3)}
