"""Benchmark: the fmnist-vae recipe against the PyTorch examples' MLP VAE, same wall clock, one CPU core.

Not a test. Prints test negative ELBO (nats per image, single-sample, Bernoulli likelihood on [0,1] grey
levels, as the PyTorch example computes it) and the IWAE bound. Pins itself to one core (--core), one torch thread.

    python bench/fmnist_vae.py                    # genlab at 49 s and 300 s, plus the reference (5 epochs)
    python bench/fmnist_vae.py --skip-reference
    python bench/fmnist_vae.py --skip-reference --optimizers adam muon:0.005 muon:0.02 --seeds 0 1 2 --budgets 49
        # Muon (train.optimizer=muon, train.muon_lr) against the recipe's Adam at the same budget (issue 21)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import DataConfig
from genlab.metrics.likelihood import test_log_likelihood
from genlab.modalities.image.data import images_to_unit, load_image_dataset
from genlab.pipeline import open_run, train

ROOT = Path(__file__).resolve().parents[1]
FMNIST = "/usr/share/datasets/fashion-mnist"


class ExampleVAE(nn.Module):
    """The MLP VAE of github.com/pytorch/examples (vae/main.py): 784-400-20, BCE + KLD, Adam 1e-3, batch 128."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def example_loss(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def run_reference(epochs: int = 5, max_seconds: float | None = None) -> dict:
    """The example's loop on in-memory tensors: `epochs` epochs, or as many batches as fit in max_seconds."""
    torch.manual_seed(1)
    ds = load_image_dataset(DataConfig(source="idx", path=FMNIST, val_fraction=0.0))
    train_x = images_to_unit(ds.split_images("train"))  # the full 60k training images, like the example
    test_x = images_to_unit(ds.split_images("test"))
    model = ExampleVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    steps = 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(train_x.shape[0]).split(128):
            if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                break
            steps += 1
            x = train_x[idx]
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = example_loss(recon, x, mu, logvar)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        total = 0.0
        for x in test_x.split(128):
            recon, mu, logvar = model(x)
            total += float(example_loss(recon, x, mu, logvar))
    return {"impl": "pytorch-examples MLP VAE", "epochs": round(steps * 128 / train_x.shape[0], 2),
            "steps": steps, "train_seconds": round(seconds, 1),
            "test_neg_elbo_nats": round(total / test_x.shape[0], 2)}


def run_genlab(budget: float, steps: int, runs_dir: Path, iwae_k: int, optimizer: str = "adam",
               seed: int = 0) -> dict:
    name = f"bench-fmnist-vae-{int(budget)}s-{optimizer.replace(':', '')}-seed{seed}"
    overrides = [f"name={name}", f"train.steps={steps}", f"train.max_seconds={budget}", "train.threads=1",
                 "train.val_every=0", f"data.path={FMNIST}", f"train.seed={seed}"]
    if optimizer.startswith("muon"):  # muon[:lr]: Muon for the matrices, AdamW (the recipe's lr) for the rest
        overrides += ["train.optimizer=muon", *([f"train.muon_lr={optimizer[5:]}"] if ":" in optimizer else [])]
    _, summary = train(ROOT / "configs" / "fmnist-vae.yaml", overrides, runs_dir, overwrite=True)
    run = open_run(runs_dir / name)
    lk = test_log_likelihood(run.model, run.dataset, k=iwae_k, max_images=None, seed=0, binarize=False)
    return {"impl": "genlab fmnist-vae", "optimizer": optimizer, "seed": seed, "budget_seconds": budget,
            "steps": summary["steps"],
            "train_seconds": summary["train_seconds"], "test_neg_elbo_nats": round(-lk["test_elbo_nats"], 2),
            f"test_neg_iwae_nats_k{iwae_k}": round(-lk["test_iwae_nats"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--iwae-k", type=int, default=100)
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    parser.add_argument("--optimizers", nargs="+", default=["adam"], help="adam | muon | muon:LR")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budgets", nargs="+", type=int, default=[49, 300], choices=[49, 300])
    parser.add_argument("--out", type=Path, default=None, help="default: RUNS_DIR/fmnist_vae.json")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    torch.set_num_threads(1)
    results = []
    if not args.skip_reference:
        results.append(run_reference())
        print(json.dumps(results[-1]), flush=True)
        results.append(run_reference(epochs=100, max_seconds=49))
        print(json.dumps(results[-1]), flush=True)
    # steps sized so the cosine schedule ends near the budget on one core of the benchmark machine
    for budget, steps in ((49, 2600), (300, 16000)):
        if budget not in args.budgets:
            continue
        for seed in args.seeds:
            for optimizer in args.optimizers:
                results.append(run_genlab(budget, steps, args.runs_dir, args.iwae_k, optimizer, seed))
                print(json.dumps(results[-1]), flush=True)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    (args.out or args.runs_dir / "fmnist_vae.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
