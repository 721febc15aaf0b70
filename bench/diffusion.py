"""Benchmark: a trained diffusion run's sample quality against its sampling settings. Not a test.

    python bench/diffusion.py sweep --run bench/out/fmnist-ddpm --n 2000 --steps 10 25 50 250 \
        --samplers ddim dpm++2m            # FID / KID (domain-classifier features) vs steps, per sampler
    python bench/diffusion.py guidance --run bench/out/fmnist-ddpm --n 1000 --scales 1 2 3
                                         # label agreement of class-conditional samples vs guidance scale
    python bench/diffusion.py fid --run bench/out/fmnist-ddpm --n 10000   # the run's default settings

Each finished row is appended to bench/out/diffusion_<run>.jsonl at once (a long sweep that is cut off
keeps its rows; rows already there are skipped), and the table is printed in markdown.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.modalities.image.evaluate import compute_image_metrics, extractor_for, label_agreement
from genlab.pipeline import generate, open_run

OUT = Path(__file__).resolve().parent / "out"


def rows_file(run: Path) -> Path:
    return OUT / f"diffusion_{run.name}.jsonl"


def done(run: Path) -> list[dict]:
    path = rows_file(run)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def record(run: Path, row: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with rows_file(run).open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def quality(loaded, extractor, n: int, seed: int, **options) -> dict:
    t0 = time.perf_counter()
    samples = generate(loaded, n, seed=seed, **options)
    sample_seconds = time.perf_counter() - t0
    m = compute_image_metrics(loaded.dataset, samples, extractor, ["fid", "kid"])
    return {"fid": m["fid"]["value"], "kid": m["kid"]["mean"], "kid_std": m["kid"]["std"], "n": n,
            "sample_seconds": round(sample_seconds, 1), "images_per_second": round(n / sample_seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sweep", "guidance", "fid"])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 250])
    ap.add_argument("--samplers", nargs="+", default=["ddim", "dpm++2m"])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    loaded = open_run(args.run)
    extractor = extractor_for(loaded.dataset, "classifier", True, True)
    seen = {(r["what"], r.get("sampler"), r.get("steps"), r.get("guidance"), r["n"]) for r in done(args.run)}
    cfg = loaded.model.config
    base = {"run": str(args.run), "threads": torch.get_num_threads()}
    if args.what == "fid":
        key = ("fid", cfg.sampler, cfg.sample_steps, cfg.guidance, args.n)
        if key not in seen:
            row = quality(loaded, extractor, args.n, args.seed)
            record(args.run, {"what": "fid", "sampler": cfg.sampler, "steps": cfg.sample_steps,
                              "guidance": cfg.guidance, **base, **row})
    elif args.what == "sweep":
        for sampler in args.samplers:
            for steps in args.steps:
                if ("sweep", sampler, steps, cfg.guidance, args.n) in seen:
                    continue
                row = quality(loaded, extractor, args.n, args.seed, sampler=sampler, steps=steps)
                record(args.run, {"what": "sweep", "sampler": sampler, "steps": steps, "guidance": cfg.guidance,
                                  **base, **row})
    else:
        classes = loaded.dataset.num_classes
        per_class = args.n // classes
        labels = torch.arange(classes).repeat_interleave(per_class)
        for scale in args.scales:
            if ("guidance", cfg.sampler, cfg.sample_steps, scale, args.n) in seen:
                continue
            t0 = time.perf_counter()
            samples = torch.cat([generate(loaded, per_class, label=c, seed=args.seed + c, guidance=scale)
                                 for c in range(classes)])
            seconds = time.perf_counter() - t0
            agree = label_agreement(loaded.dataset, samples, labels, extractor)
            q = compute_image_metrics(loaded.dataset, samples, extractor, ["fid", "kid"])
            record(args.run, {"what": "guidance", "sampler": cfg.sampler, "steps": cfg.sample_steps,
                              "guidance": scale, **base, "n": int(labels.numel()),
                              "label_agreement": agree["accuracy"], "per_class": agree["per_class"],
                              "fid": q["fid"]["value"], "kid": q["kid"]["mean"], "sample_seconds": round(seconds, 1)})
    print()
    print("| what | sampler | steps | guidance | n | FID | KID | label agreement | images/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in done(args.run):
        agree = f"{r['label_agreement']:.1%}" if "label_agreement" in r else ""
        print(f"| {r['what']} | {r['sampler']} | {r['steps']} | {r['guidance']} | {r['n']} | {r['fid']:.2f} | "
              f"{r['kid']:.3f} | {agree} | {r.get('images_per_second', '')} |")


if __name__ == "__main__":
    main()
