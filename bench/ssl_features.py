"""Benchmark: is the self-supervised (`ssl`) extractor a usable yardstick where there are no labels?

Not a test. On Fashion-MNIST, for the domain classifier (trained on the labels), the ssl encoder (trained
without them) and, as a control, the same encoder with its random initial weights:

1. calibration: FID and KID against the 10,000 test images of 10,000 real training images (near 0), of the
   test images blurred (Gaussian, sigma in pixels) and of the test images with Gaussian pixel noise;
2. ranking: FID/KID of the same samples of each run given with --runs under every extractor, and the rank
   agreement (Spearman, Kendall) of each extractor's FID with the classifier's;
3. probe: k-NN (k=20, cosine) label accuracy of the test features against 10,000 train features, a
   label-based check of what the features keep.

Extractors missing from the cache are trained first (their times are in the output). Results go to
bench/out/ssl_features.json and .md.

    OMP_NUM_THREADS=1 taskset -c 1 python bench/ssl_features.py --runs bench/out/ssl-runs/*
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy import stats

from genlab.config import DataConfig
from genlab.modalities.image.data import images_to_unit, load_image_dataset
from genlab.modalities.image.evaluate import compute_image_metrics
from genlab.modalities.image.features import ClassifierFeatures, FeatureExtractor
from genlab.modalities.image.ssl import SSLEncoder, SSLFeatures

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
FMNIST = DataConfig(source="idx", path="/usr/share/datasets/fashion-mnist")


class UntrainedEncoder(FeatureExtractor):
    """The ssl encoder at its seeded initial weights: how much of the yardstick the training adds."""

    kind = "ssl-untrained"

    def __init__(self, channels: int):
        torch.manual_seed(0)
        self.model = SSLEncoder(channels).eval()
        weights = b"".join(t.numpy().tobytes() for t in self.model.state_dict().values())
        self.name = f"ssl-untrained-{hashlib.sha256(weights).hexdigest()[:12]}"  # names its cached real features

    def _batch(self, images):
        return self.model(images)[0], None


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (reflect padding), radius 3 sigma."""
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def noised(x: torch.Tensor, std: float) -> torch.Tensor:
    return (x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)


def knn_accuracy(extractor: FeatureExtractor, train_x, train_y, test_x, test_y, k: int = 20) -> float:
    a = F.normalize(extractor.extract(train_x)["features"], dim=1)
    b = F.normalize(extractor.extract(test_x)["features"], dim=1)
    nearest = (b @ a.T).topk(k, dim=1).indices
    votes = F.one_hot(train_y[nearest], int(train_y.max()) + 1).sum(1)
    return float((votes.argmax(1) == test_y).double().mean())


def scores(ds, images, extractors) -> dict:
    out = {}
    for key, ex in extractors.items():
        m = compute_image_metrics(ds, images, ex, ["fid", "kid", "precision_recall"])
        out[key] = {"fid": m["fid"]["value"], "kid": m["kid"]["mean"], "precision": m["precision_recall"]["precision"],
                    "recall": m["precision_recall"]["recall"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, default=[])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--table", action="store_true", help="only re-print the tables of the last results")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads((OUT / "ssl_features.json").read_text())))
        return
    torch.set_num_threads(1)
    ds = load_image_dataset(FMNIST)
    result: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "samples": args.samples,
                    "training": {}}
    extractors: dict[str, FeatureExtractor] = {}
    for key, cls in (("classifier", ClassifierFeatures), ("ssl", SSLFeatures)):
        if not cls.is_trained(ds):
            t0 = time.perf_counter()
            cls.train_for(ds, quiet=False)
            result["training"][key] = f"trained now, {time.perf_counter() - t0:.1f} s"
        extractors[key] = cls(ds)
        result["training"][f"{key}_info"] = extractors[key].info
    extractors["ssl-untrained"] = UntrainedEncoder(ds.shape[0])
    print(json.dumps(result["training"]), flush=True)

    gen = torch.Generator().manual_seed(0)
    train_pick = torch.randperm(ds.splits["train"].numel(), generator=gen)[: args.samples]
    train_x = images_to_unit(ds.split_images("train")[train_pick])
    test_x = images_to_unit(ds.split_images("test"))[: args.samples]
    rows = {"real train images": train_x}
    rows.update({f"test images blurred, sigma {s} px": blur(test_x, s) for s in (0.5, 1.0, 2.0)})
    rows.update({f"test images + noise, std {s}": noised(test_x, s) for s in (0.05, 0.1, 0.2)})
    calibration = {}
    for label, images in rows.items():
        t0 = time.perf_counter()
        calibration[label] = scores(ds, images, extractors)
        print(json.dumps({"calibration": label, **calibration[label], "seconds": round(time.perf_counter() - t0, 1)}),
              flush=True)
    result["calibration"] = calibration

    train_y = ds.split_labels("train")[train_pick]
    result["knn_accuracy"] = {key: knn_accuracy(ex, train_x, train_y, images_to_unit(ds.split_images("test")),
                                                ds.split_labels("test")) for key, ex in extractors.items()}
    print(json.dumps({"knn_accuracy": result["knn_accuracy"]}), flush=True)

    from genlab.pipeline import generate, open_run

    runs = {}
    for path in args.runs:
        run = open_run(path)
        samples = generate(run, args.samples, seed=0)  # the same samples for every extractor
        runs[path.name] = scores(ds, samples, extractors)
        print(json.dumps({"run": path.name, **runs[path.name]}), flush=True)
    result["runs"] = runs
    if len(runs) >= 3:
        result["rank_agreement"] = {}
        for key in ("ssl", "ssl-untrained"):
            for metric in ("fid", "kid"):
                a = [r["classifier"][metric] for r in runs.values()]
                b = [r[key][metric] for r in runs.values()]
                result["rank_agreement"][f"{key} {metric}"] = {
                    "spearman": stats.spearmanr(a, b).statistic, "kendall": stats.kendalltau(a, b).statistic}
        print(json.dumps({"rank_agreement": result["rank_agreement"]}), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ssl_features.json").write_text(json.dumps(result, indent=1))
    (OUT / "ssl_features.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    """Raw FID/KID per extractor, then FID as a multiple of the real-vs-real floor: extractors' feature scales
    differ (the untrained encoder's by orders of magnitude), the ratio to their own floor does not."""
    keys = ("classifier", "ssl", "ssl-untrained")
    rows = {**result["calibration"], **result["runs"]}
    floor = result["calibration"]["real train images"]
    lines = ["| images | " + " | ".join(f"FID {k} | KID {k}" for k in keys) + " | "
             + " | ".join(f"FID / floor, {k}" for k in keys) + " |", "|---|" + "---|" * (3 * len(keys))]
    for label, row in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[k]['fid']:.4g} | {row[k]['kid']:.4g}" for k in keys) + " | "
                     + " | ".join(f"{row[k]['fid'] / floor[k]['fid']:.3g}" for k in keys) + " |")
    lines += ["", "| k-NN (k=20) test accuracy | " + " | ".join(f"{k} {result['knn_accuracy'][k]:.4f}" for k in keys)
              + " |"]
    if "rank_agreement" in result:
        lines += ["", "| vs classifier, over runs | Spearman | Kendall |", "|---|---|---|"]
        lines += [f"| {k} | {v['spearman']:.3f} | {v['kendall']:.3f} |" for k, v in result["rank_agreement"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
