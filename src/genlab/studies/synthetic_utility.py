"""Is the generated data worth anything downstream? A classifier trained on (a) a stratified fraction of the
real training split, (b) the same real images plus class-conditional samples from a run, (c) the samples
alone (train-synthetic-test-real), always tested on the real test split; several real-data sizes and seeds.

The synthetic set is drawn once (OUT/synthetic.npz) and shared by every arm; each arm's result is a file
under OUT/arms, so an interrupted study redoes only what is missing.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_write_bytes
from genlab.modalities.image.data import ImageDataset, images_to_unit
from genlab.pipeline import generate, open_run
from genlab.studies.common import Study, write_table


def synthetic_set(run_path: str | Path, out: Path, per_class: int, options: dict) -> dict:
    """Class-balanced samples of a conditional run as uint8 images + labels, drawn once and kept."""
    path = out / "synthetic.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            if saved["labels"].shape[0] == per_class * len(np.unique(saved["labels"])):
                return {"images": torch.from_numpy(saved["images"]), "labels": torch.from_numpy(saved["labels"]),
                        "seconds": float(saved["seconds"])}
    run = open_run(run_path)
    if not run.model.conditional:
        raise GenlabError(f"{run_path} is not class-conditional: the study needs samples of a chosen class")
    options = {k: v for k, v in options.items() if v is not None}  # unset: the run's defaults
    t0, images = time.perf_counter(), []
    for c in range(run.dataset.num_classes):
        images.append(generate(run, per_class, label=c, seed=10_000 + c, **options))
        print(f"synthetic class {c + 1}/{run.dataset.num_classes}: {per_class} samples "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # progress, also in logs
    pixels = (torch.cat(images).clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.arange(run.dataset.num_classes).repeat_interleave(per_class)
    seconds = round(time.perf_counter() - t0, 1)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=pixels.numpy(), labels=labels.numpy(), seconds=np.float64(seconds))
    atomic_write_bytes(path, buf.getvalue())
    return {"images": pixels, "labels": labels, "seconds": seconds}


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Ids (into `labels`) of `fraction` of each class, at least one per class; all of them at 1.0."""
    if fraction >= 1.0:
        return torch.arange(labels.numel())
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    picks = [rng.choice(np.flatnonzero(y == c), max(1, round((y == c).sum() * fraction)), replace=False)
             for c in np.unique(y)]
    return torch.from_numpy(np.sort(np.concatenate(picks)))


class DownstreamCNN(nn.Module):
    """A small LeNet-style CNN: the kind of classifier a user trains on their own labelled images."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, 128), nn.ReLU(),
                                 nn.Dropout(0.3), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for uint8 images."""
        return self.net(images_to_unit(x) * 2 - 1)


def train_and_test(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                   num_classes: int, steps: int, seed: int, batch_size: int = 64) -> dict:
    """Train a fresh DownstreamCNN with Adam for a fixed number of steps whatever the training-set size (so
    arms differ only in their data) and measure it on the test images."""
    torch.manual_seed(seed)
    model = DownstreamCNN(train_x.shape[1], num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, train_x.shape[0], (batch_size,), generator=gen)
        loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(batch).argmax(1) for batch in test_x.split(1000)])
    correct = (predicted == test_y).double()
    per_class = [float(correct[test_y == c].mean()) for c in range(num_classes)]
    return {"accuracy": float(correct.mean()), "per_class_accuracy": per_class, "train_images": int(train_x.shape[0]),
            "train_seconds": round(time.perf_counter() - t0, 1)}


def synthetic_utility_study(run_path: str | Path, out: str | Path, fractions=(0.01, 0.1, 1.0), seeds=(0, 1, 2),
                            per_class: int = 600, steps: int = 3000, options: dict | None = None) -> list[dict]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not fractions or not seeds or any(not 0 < f <= 1 for f in fractions):
        raise GenlabError("fractions must be in (0, 1] and at least one fraction and one seed are needed")
    run = open_run(run_path)
    dataset: ImageDataset = run.dataset
    if dataset.modality != "image" or dataset.labels is None:
        raise GenlabError(f"{run_path}: the study needs a run trained on labelled images")
    synthetic = synthetic_set(run_path, out, per_class, options or {})
    real_x, real_y = dataset.split_images("train"), dataset.split_labels("train")
    test_x, test_y = dataset.split_images("test"), dataset.split_labels("test")
    k = dataset.num_classes
    study = Study(out, len(seeds) * (2 * len(fractions) + 1))
    syn_x, syn_y = synthetic["images"], synthetic["labels"]

    def arm(name: str, kind: str, fraction: float, seed: int, x: torch.Tensor, y: torch.Tensor) -> dict:
        return study.arm(name, lambda: {"arm_kind": kind, "fraction": fraction, "seed": seed,
                                        "synthetic_images": int(syn_y.numel()) if kind != "real" else 0,
                                        **train_and_test(x, y, test_x, test_y, k, steps, seed)})

    results = []
    for seed in seeds:
        results.append(arm(f"synthetic-seed{seed}", "synthetic only", 0.0, seed, syn_x, syn_y))
        for f in fractions:
            ids = stratified_subset(real_y, f, seed)
            results.append(arm(f"real-{f:g}-seed{seed}", "real", f, seed, real_x[ids], real_y[ids]))
            results.append(arm(f"real+synthetic-{f:g}-seed{seed}", "real + synthetic", f, seed,
                               torch.cat([real_x[ids], syn_x]), torch.cat([real_y[ids], syn_y])))
    write_synthetic_utility_report(out, str(run_path), results, synthetic["seconds"])
    return results


def summarise(results: list[dict]) -> list[dict]:
    """Mean and sample standard deviation of test accuracy per (kind, fraction), over seeds."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in results:
        groups.setdefault((r["arm_kind"], r["fraction"]), []).append(r["accuracy"])
    return [{"kind": kind, "fraction": f, "mean": float(np.mean(a)), "std": float(np.std(a, ddof=1)) if len(a) > 1
             else 0.0, "seeds": len(a), "train_images": next(r["train_images"] for r in results
                                                               if (r["arm_kind"], r["fraction"]) == (kind, f))}
            for (kind, f), a in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def write_synthetic_utility_report(out: Path, run_path: str, results: list[dict], synthetic_seconds: float) -> None:
    from matplotlib.figure import Figure

    rows = summarise(results)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for kind in ("real", "real + synthetic"):
        pts = [r for r in rows if r["kind"] == kind]
        ax.errorbar([r["fraction"] * 100 for r in pts], [r["mean"] for r in pts], [r["std"] for r in pts],
                    marker="o", capsize=4, label=kind)
    only = next((r for r in rows if r["kind"] == "synthetic only"), None)
    if only:
        ax.axhspan(only["mean"] - only["std"], only["mean"] + only["std"], color="grey", alpha=0.25)
        ax.axhline(only["mean"], color="grey", ls="--", label=f"synthetic only ({only['train_images']} images)")
    ax.set_xscale("log")
    ax.set_xlabel("real training data used (%)")
    ax.set_ylabel("test accuracy on real test split")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title("genlab study synthetic-utility (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "synthetic_utility.png", dpi=110)
    write_table(out, "genlab study synthetic-utility",
                f"Generator {run_path}; synthetic set drawn in {synthetic_seconds} s; downstream CNN trained for a "
                "fixed number of steps per arm, tested on the real test split.",
                ["training data", "real fraction", "train images", "accuracy mean", "std", "seeds"],
                [[r["kind"], r["fraction"], r["train_images"], r["mean"], r["std"], r["seeds"]] for r in rows],
                "synthetic_utility.png")
