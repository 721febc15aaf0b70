"""Every image family on Google's emoji at 64 px RGB (`make emoji`): train each emoji recipe at its one-core budget,
evaluate with each feature extractor, time sampling, and print one table (docs/benchmarks.md "Colour images").

    make emoji
    genlab features train configs/emoji-vae.yaml --epochs 40        # the labelled extractor (cached)
    taskset -c 0 python bench/emoji.py --extractors classifier,ssl

Runs go to bench/out/emoji/ (a finished run is not retrained; delete it to start over). The latent diffusion
recipe reads the autoencoder trained here, so its model.latent_from is pointed at this folder's run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["vae", "dcgan", "cgan-wgangp", "ddpm", "autoencoder", "latent-ddpm"]


def genlab(*args: str) -> None:
    env = {**os.environ, "GENLAB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "genlab", *args], check=True, cwd=ROOT, env=env)


def train(recipe: str, runs: Path, seed: int) -> Path:
    name = f"emoji-{recipe}-s{seed}"
    run = runs / name
    if (run / "model.safetensors").is_file():
        return run
    extra = [f"model.latent_from={runs / f'emoji-autoencoder-s{seed}'}"] if recipe == "latent-ddpm" else []
    genlab("train", f"configs/emoji-{recipe}.yaml", "--runs-dir", str(runs), f"name={name}", f"train.seed={seed}",
           "--overwrite", *extra)
    return run


def sampling_rate(run: Path, n: int = 64) -> float:
    """Samples per second of the run's default sampler, one thread, after one warm-up call."""
    import torch

    from genlab.pipeline import generate, open_run

    torch.set_num_threads(1)
    loaded = open_run(run)
    generate(loaded, 4, seed=1)
    t0 = time.perf_counter()
    generate(loaded, n, seed=0)
    return n / (time.perf_counter() - t0)


def evaluate(run: Path, extractor: str) -> dict:
    """`genlab eval` with the classifier (every metric: likelihood, label agreement, PSNR); other extractors
    score FID/KID on the same kind of sample set (eval.metric_samples, seed 0) without re-running the rest."""
    out = run / f"metrics-{extractor}.json"
    if not out.is_file() and extractor == "classifier":
        genlab("eval", str(run), f"eval.extractor={extractor}")
        (run / "metrics.json").rename(out)
    elif not out.is_file():
        import torch

        from genlab.modalities.image.evaluate import compute_image_metrics
        from genlab.modalities.image.samples import generate_images
        from genlab.pipeline import open_run

        torch.set_num_threads(1)
        loaded = open_run(run)
        samples = generate_images(loaded.model, loaded.config.eval.metric_samples, seed=0)
        image = compute_image_metrics(loaded.dataset, samples, extractor, ["fid", "kid"], train_classifier=False)
        out.write_text(json.dumps({"image": image}, indent=1) + "\n")
    return json.loads(out.read_text())


def row(recipe: str, run: Path, extractors: list[str]) -> dict:
    summary = json.loads((run / "train_summary.json").read_text())
    found = {"recipe": recipe, "steps": summary.get("steps"), "train_s": summary.get("train_seconds"),
             "samples_per_s": round(sampling_rate(run), 2)}
    for name in extractors:
        metrics = evaluate(run, name)
        image = metrics.get("image", {})
        found[f"fid_{name}"] = round(image["fid"]["value"], 2) if "fid" in image else None
        found[f"kid_{name}"] = round(image["kid"]["mean"], 3) if "kid" in image else None
        if "label_agreement" in image:
            found["label_agreement"] = round(image["label_agreement"]["accuracy"], 3)
        recon = metrics.get("family_metrics", {}).get("reconstruction")
        if recon:
            found["psnr_db"] = round(recon["test_psnr_db"], 2)
        for key, value in metrics.get("likelihood", {}).items():
            if "bits_per_dim" in key and isinstance(value, float):
                found[key] = round(value, 3)
    return found


def figure(runs: list[tuple[str, Path]], out: Path, n: int = 18) -> None:
    """One row of samples per run (conditional runs: two per category, a seed per category), real test images
    on top."""
    import torch

    from genlab.modalities.image.samples import image_grid, png_bytes
    from genlab.pipeline import generate, open_run

    rows = []
    for i, (_, run) in enumerate(runs):
        loaded = open_run(run)
        if i == 0:
            test = loaded.dataset.split_images("test")
            rows.append(test[torch.linspace(0, test.shape[0] - 1, n).long()].float() / 255)
        k = loaded.dataset.num_classes if loaded.model.conditional else 0
        if k:
            per = [generate(loaded, -(-n // k), label=c, seed=c) for c in range(k)]
            rows.append(torch.stack([per[j % k][j // k] for j in range(n)]))
        else:
            rows.append(generate(loaded, n, seed=0))
    out.write_bytes(png_bytes(image_grid(torch.cat(rows), ncol=n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--extractors", default="classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default=str(ROOT / "bench" / "out" / "emoji"))
    parser.add_argument("--figure", help="also draw every run's samples into this PNG (a row each)")
    args = parser.parse_args()
    runs, extractors = Path(args.runs_dir), args.extractors.split(",")
    rows, trained = [], []
    for recipe in args.recipes.split(","):
        run = train(recipe, runs, args.seed)
        trained.append((recipe, run))
        rows.append(row(recipe, run, extractors))
        print(json.dumps(rows[-1]), flush=True)
    (runs / f"results-s{args.seed}.json").write_text(json.dumps(rows, indent=1) + "\n")
    if args.figure:
        figure(trained, Path(args.figure))


if __name__ == "__main__":
    main()
