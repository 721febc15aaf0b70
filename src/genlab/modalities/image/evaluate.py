"""Image metrics for a run: features extracted once, real-set features and statistics cached, every
requested metric reported as a value (with sample counts and seconds) or as an explicit error."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import torch

from genlab.core.errors import GenlabError
from genlab.core.progress import bars_off, timed
from genlab.core.runs import atomic_save_tensors, load_tensors
from genlab.metrics import image
from genlab.modalities.image.data import ImageDataset, images_to_unit
from genlab.modalities.image.features import (
    ClassifierFeatures,
    FeatureExtractor,
    cache_root,
    get_extractor,
    real_features,
)
from genlab.registry import lookup


def extractor_for(dataset: ImageDataset, name: str | FeatureExtractor, train_if_missing: bool,
                  quiet: bool) -> FeatureExtractor:
    """The named extractor, trained first for this dataset when it needs training (the domain classifier,
    the ssl encoder), none is cached and `train_if_missing`; an instance passes through."""
    if isinstance(name, FeatureExtractor):
        return name
    cls = lookup("extractor", name)
    if train_if_missing and not cls.is_trained(dataset):
        if not quiet:
            print(f"no {name} extractor cached for dataset {dataset.fingerprint}: training one", flush=True)
        cls.train_for(dataset, quiet=quiet)
    return get_extractor(name, dataset)


def extractor_kind(extractor: str | FeatureExtractor) -> str:
    return extractor if isinstance(extractor, str) else getattr(extractor, "kind", extractor.name)


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

    # k-NN manifolds compare like with like (Kynkaanniemi et al.): as many real as generated features, the
    # real ones a seeded subset of the test split when there are fewer samples (k-NN radii shrink as n grows).
    n_knn = min(n_real, n_fake)
    pick = torch.randperm(n_real, generator=torch.Generator().manual_seed(0))[:n_knn] if n_knn < n_real else None
    real_knn = real["features"] if pick is None else real["features"][pick]
    fake_knn = fake["features"][:n_knn]

    def precision_recall():
        p, r = image.precision_recall(real_knn, fake_knn)
        return {"precision": p, "recall": r}

    def density_coverage():
        d, c = image.density_coverage(real_knn, fake_knn)
        return {"density": d, "coverage": c}

    table = {"fid": fid, "kid": kid, "inception_score": inception_score, "precision_recall": precision_recall,
             "density_coverage": density_coverage}
    if fake["probs"] is None:  # e.g. the ssl encoder knows no classes: no Inception Score, and no error for it
        metrics = [m for m in metrics if m != "inception_score"]
    for name in metrics:
        t0 = time.perf_counter()
        try:
            result = table[name]()
        except (ValueError, RuntimeError) as exc:
            result = {"error": str(exc)}
        counts = (n_knn, n_knn) if name in ("precision_recall", "density_coverage") else (n_real, n_fake)
        out[name] = {**result, "n_real": counts[0], "n_fake": counts[1], "seconds": round(time.perf_counter() - t0, 3)}
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


def evaluate_image_run(run, ec, quiet: bool = True) -> dict:
    """Memorisation (nearest training images of the samples against the test split's), the image metrics of
    eval.image_metrics on eval.metric_samples samples, label agreement for conditional models; sample grids
    are kept in the run. The feature extractor is resolved before any sample is generated for it, so metrics
    that cannot run say why instead of scoring nothing."""
    from genlab.metrics.memorisation import memorisation_report
    from genlab.modalities.image.samples import generate_images, save_samples

    ds, model, timings, inner = run.dataset, run.model, {}, bars_off(quiet)
    metrics: dict = {"timings_seconds": timings}
    t0 = time.perf_counter()
    if extra := model.family_metrics(ds, ec, inner):  # e.g. the autoencoder's test reconstruction PSNR
        metrics["family_metrics"] = extra
        timings["family_metrics"] = round(time.perf_counter() - t0, 3)
    with timed(timings, "memorisation", quiet):
        samples = generate_images(model, ec.n_samples, seed=ec.seed)
        train = images_to_unit(ds.split_images("train"))
        test = images_to_unit(ds.split_images("test")[: ec.memorisation_reference])
        metrics["memorisation"] = memo = memorisation_report(samples, train, test)
    with timed(timings, "image_metrics", quiet):
        try:  # resolved once, shared by the image metrics and label agreement
            extractor, why = extractor_for(ds, ec.extractor, ec.train_classifier, inner), ""
        except GenlabError as exc:
            extractor, why = None, str(exc)
        if extractor is None:
            metrics["image"] = {"extractor": ec.extractor, **{name: {"error": why} for name in ec.image_metrics}}
        else:
            more = ec.metric_samples - samples.shape[0]  # the memorisation samples count too: draws are i.i.d.
            scored = torch.cat([samples, generate_images(model, more, seed=ec.seed + 1)]) if more > 0 else samples
            metrics["image"] = compute_image_metrics(ds, scored[: ec.metric_samples], extractor, ec.image_metrics,
                                                     ec.train_classifier, inner)
    run.paths.samples.mkdir(exist_ok=True)
    save_samples(samples[:64], run.paths.samples / "grid.png")
    closest = samples[memo["closest_samples"]]
    neighbours = train[memo["closest_train_indices"]]
    save_samples(torch.cat([closest, neighbours]), run.paths.samples / "closest_to_train.png", ncol=len(closest))
    if model.conditional:
        per_class = max(1, ec.n_samples // ds.num_classes)
        rows = [generate_images(model, per_class, label=c, seed=ec.seed + c) for c in range(ds.num_classes)]
        labels = torch.arange(ds.num_classes).repeat_interleave(per_class)
        if extractor is None:
            metrics["image"]["label_agreement"] = {"error": why}
        elif extractor.gives_probs:  # absent with the ssl encoder, which knows no classes
            metrics["image"]["label_agreement"] = label_agreement(ds, torch.cat(rows), labels, extractor,
                                                                  ec.train_classifier, inner)
        shown = min(10, per_class)
        save_samples(torch.cat([r[:shown] for r in rows]), run.paths.samples / "by_class.png", ncol=shown)
    return metrics
