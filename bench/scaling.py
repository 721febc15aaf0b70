"""Benchmark: training throughput of one recipe with 1 vs 2 processes (torchrun, gloo on CPU), bf16 autocast
and torch.compile. Not a test.

    python bench/scaling.py [--recipe configs/shakespeare-char-gpt.yaml] [--steps 150]

Each variant is a fresh `genlab train` of the same recipe for --steps steps with the same global batch
(--batch), without validation or checkpoints; the figure is the run's own train_seconds over all its steps
(so torch.compile's compilation time is included). One torch thread per process, processes pinned to
distinct cores. Writes bench/out/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(recipe: str, steps: int, extra: list[str], processes: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train", recipe, f"train.steps={steps}", "train.max_seconds=null", "train.val_every=0",
                "train.checkpoint_every=0", "train.threads=1", *extra, "--runs-dir", tmp]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GENLAB_QUIET": "1"}
        if processes == 1:
            cmd = ["taskset", "-c", "0", sys.executable, "-m", "genlab.cli", *args]
        else:
            cmd = ["taskset", "-c", f"0-{processes - 1}", sys.executable, "-m", "torch.distributed.run",
                   "--standalone", f"--nproc_per_node={processes}", "-m", "genlab.cli", *args]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        summary = json.loads(next(Path(tmp).glob("*/train_summary.json")).read_text())
        log = next(Path(tmp).glob("*/log.csv")).read_text().splitlines()
    last_loss = [float(r.split(",")[3]) for r in log[1:] if ",train,loss," in r][-1]
    return {"steps": summary["steps"], "seconds": summary["train_seconds"],
            "steps_per_second": round(summary["steps"] / summary["train_seconds"], 3), "last_train_loss": last_loss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="configs/shakespeare-char-gpt.yaml")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    batch = [f"train.batch_size={args.batch}"]
    results = {
        "fp32, 1 process": run(args.recipe, args.steps, batch),
        "fp32, 2 processes (gloo)": run(args.recipe, args.steps, batch, processes=2),
        "bf16 autocast, 1 process": run(args.recipe, args.steps, [*batch, "train.precision=bf16"]),
        "torch.compile, 1 process": run(args.recipe, args.steps, [*batch, "train.compile=true"]),
    }
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps({"recipe": args.recipe, "batch": args.batch, **results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
