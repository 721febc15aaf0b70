"""Benchmark: genlab's image metrics against torch-fidelity and pytorch-fid's formulas, and on Fashion-MNIST.

Not a test. Three parts, each printing JSON lines (results also in bench/out/image_metrics.json):

1. agreement: FID, KID and IS from genlab and torch-fidelity 0.4.0 on identical feature arrays;
2. frechet: time of the Fréchet distance itself on 2048-d statistics of 10k vs 10k features, one core:
   pytorch-fid's scipy sqrtm path, torch-fidelity's eigenvalue path, genlab (cold, and with the real
   statistics' square root cached as `genlab eval` caches it);
3. fmnist: domain classifier accuracy, extraction + FID wall time for 10k test images vs 10k samples
   (2 cores), and the ranking real << trained << untrained for the runs given with --runs.

    pip install --no-deps torch-fidelity==0.4.0     # benchmark only, not a genlab dependency
    OMP_NUM_THREADS=1 taskset -c 0 python bench/image_metrics.py agreement frechet
    python bench/image_metrics.py fmnist --runs bench/out/fmnist-vae bench/out/fmnist-dcgan
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from genlab.metrics import image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def torch_fidelity_modules():
    """torch-fidelity imports torchvision at package import; its metric code does not use it, so stub it."""
    for name in ("torchvision", "torchvision.datasets", "torchvision.transforms",
                 "torchvision.transforms.functional", "torchvision.models", "torchvision.io"):
        sys.modules.setdefault(name, mock.MagicMock(name=name))
    from torch_fidelity import metric_fid, metric_isc, metric_kid

    return metric_fid, metric_kid, metric_isc


def synthetic_features(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    """Non-negative, correlated features shaped like Inception pool features (ReLU of a random projection)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(256, d, generator=torch.Generator().manual_seed(99)) / 16
    z = torch.randn(n, 256, generator=g) + shift
    return torch.relu(z @ w + 0.1).float()


def agreement() -> dict:
    metric_fid, metric_kid, metric_isc = torch_fidelity_modules()
    real, fake = synthetic_features(10000, 2048, 0.0, 1), synthetic_features(10000, 2048, 0.15, 2)
    stats_tf = [metric_fid.fid_features_to_statistics(f) for f in (real, fake)]
    fid_tf = metric_fid.fid_statistics_to_metric(*stats_tf, verbose=False)["frechet_inception_distance"]
    fid_gl = image.frechet_distance(image.GaussianStats.from_features(real), image.GaussianStats.from_features(fake))[0]
    kid_tf = metric_kid.kid_features_to_metric(real, fake, kid_subsets=100, kid_subset_size=1000, verbose=False,
                                               kid_kernel="poly", kid_kernel_poly_degree=3,
                                               kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=2020)
    kid_gl = image.kid(real, fake)
    logits = torch.randn(10000, 10, generator=torch.Generator().manual_seed(3)) * 3
    isc_tf = metric_isc.isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    isc_gl = image.inception_score(logits.double().softmax(1))
    rel = lambda a, b: abs(a - b) / abs(b)  # noqa: E731
    return {"part": "agreement", "features": "10k vs 10k, 2048-d",
            "fid_genlab": fid_gl, "fid_torch_fidelity": fid_tf, "fid_rel_diff": rel(fid_gl, fid_tf),
            "kid_genlab": kid_gl[0], "kid_torch_fidelity": kid_tf["kernel_inception_distance_mean"],
            "kid_rel_diff": rel(kid_gl[0], kid_tf["kernel_inception_distance_mean"]),
            "kid_std_genlab": kid_gl[1], "kid_std_torch_fidelity": kid_tf["kernel_inception_distance_std"],
            "is_genlab": isc_gl[0], "is_torch_fidelity": isc_tf["inception_score_mean"],
            "is_rel_diff": rel(isc_gl[0], isc_tf["inception_score_mean"])}


def pytorch_fid_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm path), as published."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def timed(fn, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def frechet(repeats: int) -> dict:
    metric_fid, _, _ = torch_fidelity_modules()
    torch.set_num_threads(1)
    real, fake = synthetic_features(10000, 2048, 0.0, 1), synthetic_features(10000, 2048, 0.15, 2)
    s_real, s_fake = image.GaussianStats.from_features(real), image.GaussianStats.from_features(fake)
    np_stats = [{"mu": s.mu.numpy(), "sigma": s.sigma.numpy()} for s in (s_real, s_fake)]
    out = {"part": "frechet", "repeats": repeats, "torch_threads": torch.get_num_threads()}
    t, v = timed(lambda: pytorch_fid_frechet(np_stats[0]["mu"], np_stats[0]["sigma"], np_stats[1]["mu"],
                                             np_stats[1]["sigma"]), repeats)
    out.update(pytorch_fid_seconds=t, pytorch_fid_value=v)
    t, v = timed(lambda: metric_fid.fid_statistics_to_metric(*np_stats, verbose=False)["frechet_inception_distance"],
                 repeats)
    out.update(torch_fidelity_seconds=t, torch_fidelity_value=v)

    def cold():
        return image.frechet_distance(image.GaussianStats(s_real.mu, s_real.sigma, s_real.n), s_fake)[0]

    t, v = timed(cold, repeats)
    out.update(genlab_cold_seconds=t, genlab_cold_value=v)
    s_real.sqrt_sigma()
    t, v = timed(lambda: image.frechet_distance(s_real, s_fake)[0], repeats)
    out.update(genlab_cached_seconds=t, genlab_cached_value=v)
    out["speedup_cached_vs_torch_fidelity"] = out["torch_fidelity_seconds"] / out["genlab_cached_seconds"]
    out["max_rel_diff_vs_torch_fidelity"] = max(abs(out[k] - out["torch_fidelity_value"]) / out["torch_fidelity_value"]
                                                for k in ("genlab_cold_value", "genlab_cached_value",
                                                          "pytorch_fid_value"))
    return out


def fmnist(runs: list[Path]) -> list[dict]:
    from genlab.config import DataConfig
    from genlab.modalities.image.data import images_to_unit, load_image_dataset
    from genlab.modalities.image.evaluate import compute_image_metrics
    from genlab.modalities.image.features import ClassifierFeatures, classifier_dir, train_domain_classifier
    from genlab.pipeline import generate, open_run
    from genlab.train.trainer import build_model, data_spec

    torch.set_num_threads(2)
    ds = load_image_dataset(DataConfig(source="idx", path="/usr/share/datasets/fashion-mnist"))
    results = []
    if not (classifier_dir(ds) / "classifier.json").is_file():
        info = train_domain_classifier(ds)
        results.append({"part": "fmnist", "classifier_test_accuracy": info["test_accuracy"],
                        "classifier_train_seconds": info["train_seconds"]})
    else:
        results.append({"part": "fmnist", "classifier_test_accuracy":
                        json.loads((classifier_dir(ds) / "classifier.json").read_text())["test_accuracy"]})
    # Timed: features of 10k real test images (cold cache) + 10k samples + FID, 2 threads.
    extractor = ClassifierFeatures(ds)
    real_train = images_to_unit(ds.split_images("train")[:10000])
    t0 = time.perf_counter()
    real_test_feats = extractor.extract(images_to_unit(ds.split_images("test")))["features"]
    fake_feats = extractor.extract(real_train)["features"]
    fid = image.frechet_distance(image.GaussianStats.from_features(real_test_feats),
                                 image.GaussianStats.from_features(fake_feats))[0]
    results.append({"part": "fmnist", "extract_10k_plus_10k_and_fid_seconds": round(time.perf_counter() - t0, 2),
                    "threads": torch.get_num_threads(), "fid_real_train_10k_vs_test": fid})
    wanted = ["fid", "kid", "inception_score", "precision_recall", "density_coverage"]
    rows = [("real train (10k)", real_train)]
    for run_dir in runs:
        run = open_run(run_dir)
        rows.append((f"{run_dir.name} (trained)", generate(run, 10000, seed=1)))
        untrained = build_model(run.config, data_spec(run.dataset)).eval()
        run.model = untrained
        rows.append((f"{run_dir.name} (untrained)", generate(run, 10000, seed=1)))
    for label, samples in rows:
        m = compute_image_metrics(ds, samples, "classifier", wanted)
        results.append({"part": "fmnist", "images": label, "fid": m["fid"]["value"], "kid": m["kid"]["mean"],
                        "is": m["inception_score"]["mean"], "precision": m["precision_recall"]["precision"],
                        "recall": m["precision_recall"]["recall"], "density": m["density_coverage"]["density"],
                        "coverage": m["density_coverage"]["coverage"]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", choices=["agreement", "frechet", "fmnist"])
    parser.add_argument("--runs", nargs="*", type=Path, default=[])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = []
    for part in args.parts:
        got = {"agreement": agreement, "frechet": lambda: frechet(args.repeats),
               "fmnist": lambda: fmnist(args.runs)}[part]()
        for row in got if isinstance(got, list) else [got]:
            print(json.dumps(row), flush=True)
            results.append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"image_metrics_{'_'.join(args.parts)}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
