"""Image editing on held-out emoji against simple baselines (docs/benchmarks.md "Image editing").

    make emoji
    python -m venv /tmp/cv && /tmp/cv/bin/pip install opencv-python-headless==5.0.0.93 scikit-image==0.26.0
    taskset -c 0 python bench/emoji.py --recipes ddpm                     # Google's pixel diffusion run
    taskset -c 0 python bench/editing.py prepare                          # the Google+Twitter CycleGAN data
    taskset -c 0 python bench/editing.py train                            # Twitter diffusion + CycleGAN runs
    taskset -c 0 python bench/editing.py inpaint --cv /tmp/cv/bin/python
    taskset -c 0 python bench/editing.py transfer --cv /tmp/cv/bin/python

Held-out images only: the test split of the emoji recipes (the same 381 emoji in Google's and Twitter's sets:
both folders list the same files in the same order, so the seeded split picks the same emoji). The CycleGAN's
data is both sets in one .npz whose stored split codes are those same splits, so no test emoji of either vendor
is trained on. PSNR and SSIM are computed by scikit-image and OpenCV's Telea inpainting runs in their own venv
(`--cv`, bench/edit_scores.py): neither is a genlab dependency. FID/KID use genlab's classifier features of the
Google emoji (its domain classifier, also for the Twitter set, so both FIDs share one feature space).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "edit"
EMOJI = ROOT / "bench" / "out" / "emoji"
SPLIT = {"val_fraction": 0.05, "test_fraction": 0.2}


def dataset(vendor: str):
    from genlab.config import DataConfig
    from genlab.modalities.image.data import load_image_dataset

    return load_image_dataset(DataConfig(source="folder", path=str(ROOT / f"data/emoji/{vendor}-64"), **SPLIT))


def genlab(*args: str) -> None:
    env = {**os.environ, "GENLAB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "genlab", *args], check=True, cwd=ROOT, env=env)


def prepare() -> None:
    """Both vendors in one npz: labels 0 = Google (A), 1 = Twitter (B), split codes copied from the recipes'."""
    google, twitter = dataset("google"), dataset("twitter")
    assert google.names() == twitter.names(), "the two sets must list the same emoji"
    assert (google.split_codes() == twitter.split_codes()).all()
    OUT.mkdir(parents=True, exist_ok=True)
    n = google.images.shape[0]
    both = np.concatenate([google.images.numpy(), twitter.images.numpy()])
    np.savez_compressed(OUT / "google-twitter.npz", images=both,
                        labels=np.repeat(np.array([0, 1]), n), split=np.concatenate([google.split_codes()] * 2))
    print(f"wrote {OUT / 'google-twitter.npz'}: {2 * n} images, {int((google.split_codes() == 2).sum())} test emoji")


def train(steps_twitter: int | None, cyclegan_steps: int) -> None:
    """Twitter's pixel diffusion (Google's recipe and step count) and the CycleGAN, by steps (reproducible on a
    busy machine; their wall-clock is in each run's train_summary.json)."""
    google = json.loads((EMOJI / "emoji-ddpm-s0" / "train_summary.json").read_text())
    steps = steps_twitter or google["steps"]
    if not (OUT / "emoji-ddpm-twitter" / "model.safetensors").is_file():
        genlab("train", "configs/emoji-ddpm.yaml", "--runs-dir", str(OUT), "name=emoji-ddpm-twitter",
               "data.path=data/emoji/twitter-64", f"train.steps={steps}", "train.max_seconds=null", "--overwrite")
    if not (OUT / "emoji-cyclegan" / "model.safetensors").is_file():
        genlab("train", "configs/emoji-cyclegan.yaml", "--runs-dir", str(OUT), "name=emoji-cyclegan",
               "data.source=npz", f"data.path={OUT / 'google-twitter.npz'}", f"train.steps={cyclegan_steps}",
               "train.max_seconds=null", "--overwrite")


def scores(cv_python: str, name: str, arrays: dict) -> dict:
    """PSNR / SSIM (and Telea inpainting) from bench/edit_scores.py in the OpenCV venv."""
    path = OUT / f"{name}.npz"
    np.savez_compressed(path, **arrays)
    out = subprocess.run([cv_python, str(ROOT / "bench" / "edit_scores.py"), str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def fid_kid(data, images: torch.Tensor, extractor) -> dict:
    from genlab.modalities.image.evaluate import compute_image_metrics

    m = compute_image_metrics(data, images, extractor, ["fid", "kid"], train_classifier=False, quiet=True)
    return {"fid": round(m["fid"]["value"], 2), "kid": round(m["kid"]["mean"], 3)}


def classifier():
    from genlab.modalities.image.features import ClassifierFeatures

    return ClassifierFeatures(dataset("google"))


def inpaint(cv_python: str, steps: int, limit: int | None) -> None:
    from genlab.modalities.image.data import images_to_unit
    from genlab.modalities.image.edit import shape_mask
    from genlab.pipeline import open_run

    torch.set_num_threads(1)
    run = open_run(EMOJI / "emoji-ddpm-s0")
    data = run.dataset
    test = images_to_unit(data.split_images("test"))[:limit]
    labels = data.split_labels("test")[:limit]
    size = tuple(test.shape[-2:])
    masks = {"centre 25%": shape_mask("centre:0.25", size).expand(test.shape[0], 1, *size),
             "strokes": torch.stack([shape_mask(f"strokes:{i}", size) for i in range(test.shape[0])])}
    extractor = classifier()
    results = {}
    for mask_name, known in masks.items():
        known = known.reshape(test.shape[0], 1, *size).float()
        filled = {}
        for method, options in {"repaint": {"steps": steps},
                                "repaint, jumps 10x3": {"steps": steps, "jump_length": 10, "jump_n_sample": 3},
                                "repaint, unconditional": {"steps": steps, "uncond": True}}.items():
            t0 = time.perf_counter()
            uncond = options.pop("uncond", False)
            out = torch.cat([run.model.inpaint(test[i:i + 50], known[i:i + 50],
                                               None if uncond else labels[i:i + 50], seed=0, **options)
                             for i in range(0, test.shape[0], 50)])
            filled[method] = (out, time.perf_counter() - t0)
        known_mean = (test * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp(min=1)
        filled["mean fill"] = (test * known + known_mean * (1 - known), 0.0)
        arrays = {"original": test.numpy(), "known": known.numpy(),
                  **{f"method:{k}": v[0].numpy() for k, v in filled.items()}}
        measured = scores(cv_python, f"inpaint-{mask_name.split()[0]}", arrays)
        telea = torch.from_numpy(np.load(OUT / f"inpaint-{mask_name.split()[0]}-telea.npz")["images"])
        filled["OpenCV Telea"] = (telea, measured["OpenCV Telea"].pop("seconds"))
        for method, (images, seconds) in filled.items():
            row = {**measured[method], **fid_kid(data, images, extractor), "seconds": round(seconds, 1)}
            results.setdefault(mask_name, {})[method] = row
            print(mask_name, method, json.dumps(row), flush=True)
    (OUT / "inpaint.json").write_text(json.dumps(results, indent=1) + "\n")


def transfer(cv_python: str, steps: int, limit: int | None) -> None:
    from genlab.modalities.image.data import images_to_unit
    from genlab.pipeline import open_run

    torch.set_num_threads(1)
    google, twitter = open_run(EMOJI / "emoji-ddpm-s0"), open_run(OUT / "emoji-ddpm-twitter")
    cyclegan = open_run(OUT / "emoji-cyclegan")
    source = images_to_unit(google.dataset.split_images("test"))[:limit]
    target = images_to_unit(twitter.dataset.split_images("test"))[:limit]
    labels = google.dataset.split_labels("test")[:limit]
    extractor = classifier()
    outputs = {"identity (input unchanged)": (source, 0.0)}
    t0 = time.perf_counter()
    with torch.no_grad():
        outputs["CycleGAN"] = (torch.cat([cyclegan.model.transfer(source[i:i + 50], "a2b")
                                          for i in range(0, source.shape[0], 50)]), time.perf_counter() - t0)
    for name, use_labels in (("DDIM inversion (Google) -> decoding (Twitter)", True),
                             ("DDIM inversion -> decoding, unconditional", False)):
        t0 = time.perf_counter()
        parts = []
        for i in range(0, source.shape[0], 50):
            y = labels[i:i + 50] if use_labels else None
            noise = google.model.invert(source[i:i + 50], y, steps=steps)
            parts.append(twitter.model.decode_from_noise(noise, y, steps=steps))
        outputs[name] = (torch.cat(parts), time.perf_counter() - t0)
    measured = scores(cv_python, "transfer", {"original": target.numpy(),
                                              **{f"method:{k}": v[0].numpy() for k, v in outputs.items()}})
    target_features = extractor.extract(target)["features"]
    results = {}
    for name, (images, seconds) in outputs.items():
        distance = (extractor.extract(images)["features"] - target_features).norm(dim=1)
        results[name] = {**measured[name], "feature_distance": round(float(distance.mean()), 3),
                         **fid_kid(twitter.dataset, images, extractor), "seconds": round(seconds, 1)}
        print(name, json.dumps(results[name]), flush=True)
    (OUT / "transfer.json").write_text(json.dumps(results, indent=1) + "\n")


def figure(out: Path, n: int = 12) -> None:
    """Rows of the first test emoji: inpainting (masked input, each method, original) per mask, then transfer
    (input, each route, the true Twitter emoji)."""
    from genlab.modalities.image.samples import image_grid, png_bytes

    rows = []
    for mask in ("centre", "strokes"):
        arrays = dict(np.load(OUT / f"inpaint-{mask}.npz"))
        known = torch.from_numpy(arrays["known"][:n])
        original = torch.from_numpy(arrays["original"][:n])
        rows += [original * known + (1 - known) * 0.5]
        rows += [torch.from_numpy(arrays[f"method:{m}"][:n]) for m in ("repaint, jumps 10x3", "mean fill")]
        rows += [torch.from_numpy(np.load(OUT / f"inpaint-{mask}-telea.npz")["images"][:n]), original]
    arrays = dict(np.load(OUT / "transfer.npz"))
    rows += [torch.from_numpy(arrays[f"method:{m}"][:n]) for m in
             ("identity (input unchanged)", "CycleGAN", "DDIM inversion (Google) -> decoding (Twitter)")]
    rows.append(torch.from_numpy(arrays["original"][:n]))
    out.write_bytes(png_bytes(image_grid(torch.cat([r.float() for r in rows]), ncol=n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("prepare", "train", "inpaint", "transfer", "figure"))
    parser.add_argument("--cv", default="/tmp/cv/bin/python", help="a Python with opencv and scikit-image")
    parser.add_argument("--steps", type=int, default=50, help="network calls per edit (jump-free walk)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test emoji")
    parser.add_argument("--twitter-steps", type=int, default=None, help="default: the Google run's step count")
    parser.add_argument("--cyclegan-steps", type=int, default=600)
    args = parser.parse_args()
    if args.stage == "prepare":
        prepare()
    elif args.stage == "train":
        train(args.twitter_steps, args.cyclegan_steps)
    elif args.stage == "inpaint":
        inpaint(args.cv, args.steps, args.limit)
    elif args.stage == "transfer":
        transfer(args.cv, args.steps, args.limit)
    else:
        figure(ROOT / "docs" / "img" / "emoji_editing.png")


if __name__ == "__main__":
    main()
