"""Benchmark (issue #21): time to quality of the character GPT on Tiny Shakespeare on one CPU core. Not a test.

    python bench/speedrun.py [--recipe configs/shakespeare-char-gpt.yaml] [--budget 160] [--seeds 0 1 2]
                             [--variants genlab muon all] [--target 1.886] [--val-every 100] [--core 0]
                             [--nanogpt DIR]

Each named variant (VARIANTS: today's recipe; each change of the issue alone; all together) is the recipe plus
overrides, trained for --budget seconds of training (train.max_seconds) per seed in its own process, pinned to
one core (`taskset -c CORE`, train.threads=1, OMP_NUM_THREADS=1). The trainer validates every --val-every steps
on the WHOLE validation split (train.val_batches=null: exact loss, nats/char); each validation is recorded with
the run's training clock (Trainer.elapsed: the time spent in training steps, validation excluded). Reported per
variant, medians over seeds: the training time at which the validation loss first reaches --target (default
1.886, nanoGPT's baby GPT at 2,000 iterations; resolution: --val-every steps), and the loss at 60 s and at 160 s
(the last validation at or before that time, with 0.5 s slack for the step in flight when the budget ran out).
The learning-rate schedule spans train.steps (the recipe's 2,000 steps take about 160 s), not the budget.

`--nanogpt DIR` adds nanoGPT's baby GPT (a checkout of karpathy/nanoGPT; not a dependency, nothing is fetched) as
a row: its train.py with config/train_shakespeare_char.py and the README's CPU settings (4 layers, 4 heads, 128
wide, context 64, batch 12, 2,000 iterations, lr decay over 2,000, dropout 0, no compile), run in a scratch
folder on the repository's own Tiny Shakespeare (its prepare.py finds input.txt there and downloads nothing), on
the same core. Its validation loss is nanoGPT's own estimate (--nanogpt-eval-iters random batches every
--nanogpt-eval-interval iterations, not exact); its clock is the sum of its logged per-iteration times before each
evaluation, an iteration that began with an evaluation counted at the median iteration time (its logged time
includes the evaluation); seed s runs nanoGPT with its seed constant 1337 replaced by 1337 + s. Without DIR
(or without train.py in it) the row is skipped with a message.

Writes bench/out/speedrun.json (every validation of every run, and the summary table).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK = ["model.qk_norm=true", "model.mlp_activation=relu2", "model.tie_embeddings=false", "model.zero_init_proj=true",
         "model.logit_softcap=30"]
ALL = ["train.optimizer=muon", "train.precision=bf16", *BLOCK, "train.schedule=wsd", "train.decay_fraction=0.3"]
VARIANTS: dict[str, list[str]] = {
    "genlab": [],  # configs/shakespeare-char-gpt.yaml as committed
    # Muon at the recipe's lr (5e-3; its update is RMS-matched to AdamW's): the best of 0.003-0.04 in a one-seed
    # sweep (docs/benchmarks.md); Newton-Schulz in bf16 where the CPU has native bf16 products (auto)
    "muon": ["train.optimizer=muon"],
    "bf16": ["train.precision=bf16"],  # autocast of the forward pass to bfloat16
    "qk_norm": ["model.qk_norm=true"],
    "relu2": ["model.mlp_activation=relu2"],
    "untied": ["model.tie_embeddings=false"],
    "zero_init": ["model.zero_init_proj=true"],
    "softcap": ["model.logit_softcap=30"],
    "wsd": ["train.schedule=wsd", "train.decay_fraction=0.3"],
    "all": ALL,
}
CHECKPOINTS = (60.0, 160.0)
SLACK = 0.5


# -- one genlab run (this script again, in a pinned subprocess) -------------------------------------------------
def worker(recipe: str, overrides: list[str], out: str) -> None:
    """Train in this process, recording every validation with the training clock, to `out` (JSON)."""
    import torch

    torch.set_num_threads(1)
    from genlab.pipeline import train
    from genlab.train.trainer import Trainer

    points: list[dict] = []
    validate = Trainer._validate

    def recorded(self, log):
        stop = validate(self, log)
        points.append({"step": self.step, "seconds": round(self.elapsed, 3), **self.last_validation})
        Path(out).write_text(json.dumps(points))
        return stop

    Trainer._validate = recorded
    with tempfile.TemporaryDirectory() as tmp:
        _, summary = train(recipe, overrides, runs_dir=tmp)
    Path(out).write_text(json.dumps({"points": points, "summary": summary}))


def run_genlab(args, name: str, extra: list[str], seed: int) -> dict:
    overrides = [f"train.max_seconds={args.budget}", f"train.val_every={args.val_every}", "train.val_batches=null",
                 "train.checkpoint_every=0", "train.threads=1", f"train.seed={seed}", "train.log_every=1000000",
                 *extra]
    if args.steps:
        overrides.append(f"train.steps={args.steps}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "points.json"
        cmd = ["taskset", "-c", str(args.core), sys.executable, __file__, "--worker", args.recipe, str(out), "--",
               *overrides]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GENLAB_QUIET": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"variant {name} seed {seed} failed:\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text())
    points = [{"step": p["step"], "seconds": p["seconds"], "loss": p["loss"]} for p in result["points"]]
    return {"points": points, "steps": result["summary"]["steps"],
            "train_seconds": result["summary"]["train_seconds"]}


# -- nanoGPT's baby GPT --------------------------------------------------------------------------------------------
def run_nanogpt(args, seed: int = 0) -> dict | None:
    repo = Path(args.nanogpt)
    needed = ["train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py",
              "data/shakespeare_char/prepare.py"]
    if missing := [n for n in needed if not (repo / n).is_file()]:
        print(f"nanoGPT: {repo} has no {missing[0]} (a checkout of karpathy/nanoGPT is needed); row skipped",
              file=sys.stderr)
        return None
    text = ROOT / "data" / "tinyshakespeare.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in needed:
            (work / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo / n, work / n)
        script = work / "train.py"  # its seed is a constant (1337 + rank offset): seed s runs with 1337 + s
        code = script.read_text()
        if "torch.manual_seed(1337 + seed_offset)" not in code:
            raise SystemExit("nanoGPT's train.py no longer seeds with torch.manual_seed(1337 + seed_offset)")
        script.write_text(code.replace("torch.manual_seed(1337 + seed_offset)",
                                       f"torch.manual_seed({1337 + seed} + seed_offset)"))
        data = work / "data" / "shakespeare_char"
        shutil.copy(text, data / "input.txt")  # prepare.py downloads only when input.txt is missing
        subprocess.run([sys.executable, "prepare.py"], cwd=data, env=env, check=True, capture_output=True)
        cmd = ["taskset", "-c", str(args.core), sys.executable, "train.py", "config/train_shakespeare_char.py",
               "--device=cpu", "--compile=False", "--dtype=float32", f"--eval_iters={args.nanogpt_eval_iters}",
               f"--eval_interval={args.nanogpt_eval_interval}", "--log_interval=1", "--block_size=64",
               "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
               "--lr_decay_iters=2000", "--dropout=0.0", "--always_save_checkpoint=False"]
        try:
            done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=900)
            log = done.stdout
        except subprocess.TimeoutExpired as exc:
            log = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    return parse_nanogpt(log)


def parse_nanogpt(log: str) -> dict:
    """Validation points (iteration, training seconds before it, val loss) from nanoGPT's stdout: `step N: train
    loss X, val loss Y` at evaluations, `iter N: loss X, time Tms` after every iteration.

    nanoGPT's per-iteration time of an iteration that began with an evaluation includes that evaluation
    (2 x eval_iters forward passes: about 10 s at 200 batches, every --val-every iterations). genlab's clock
    excludes validation, so such an iteration is counted at the median time of the iterations without one."""
    events: list[tuple] = []  # ("eval", step, loss) | ("iter", step, seconds, after_eval)
    after_eval = False
    for line in log.splitlines():
        if m := re.match(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", line):
            events.append(("eval", int(m.group(1)), float(m.group(2))))
            after_eval = True
        elif m := re.match(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", line):
            events.append(("iter", int(m.group(1)), float(m.group(2)) / 1000, after_eval))
            after_eval = False
    plain = [e[2] for e in events if e[0] == "iter" and not e[3]]
    typical = statistics.median(plain) if plain else 0.0
    clock, points, steps, raw = 0.0, [], 0, 0.0
    for e in events:
        if e[0] == "eval":
            points.append({"step": e[1], "seconds": round(clock, 3), "loss": e[2]})
        else:
            clock += typical if e[3] else e[2]
            raw += e[2]
            steps = e[1] + 1
    return {"points": points, "steps": steps, "train_seconds": round(clock, 3), "seconds_with_eval": round(raw, 3),
            "median_ms_per_iter": round(1000 * typical, 2)}


# -- summaries --------------------------------------------------------------------------------------------------
def time_to(points: list[dict], target: float) -> float | None:
    return next((p["seconds"] for p in points if p["loss"] <= target), None)


def loss_at(points: list[dict], seconds: float) -> float | None:
    before = [p for p in points if p["seconds"] <= seconds + SLACK]
    return before[-1]["loss"] if before and points[-1]["seconds"] >= seconds - SLACK else None


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def spread(values: list) -> str | None:
    values = [v for v in values if v is not None]
    return f"{min(values):.3f}-{max(values):.3f}" if len(values) > 1 else None


def summarise(runs: list[dict], target: float) -> dict:
    times = [time_to(r["points"], target) for r in runs]
    row = {"seeds": len(runs), "reached": sum(t is not None for t in times), "time_to_target_s": median(times),
           "time_to_target_range": spread(times)}
    for t in CHECKPOINTS:
        row[f"loss_at_{t:g}s"] = median([loss_at(r["points"], t) for r in runs])
    finals = [r["points"][-1]["loss"] if r["points"] else None for r in runs]
    row["final_loss"] = median(finals)
    row["final_loss_range"] = spread(finals)
    row["steps"] = median([r["steps"] for r in runs])
    row["ms_per_step"] = median([1000 * r["train_seconds"] / r["steps"] for r in runs if r["steps"]])
    return row


def reprint(files: list[str], target: float) -> None:
    """The summary table of earlier result files (several runs of this script: same variants merged)."""
    runs: dict[str, list[dict]] = {}
    for f in files:
        for name, rs in json.loads(Path(f).read_text())["runs"].items():
            runs.setdefault(name, []).extend(rs)
    print_table({name: summarise(r, target) for name, r in runs.items()})


def print_table(table: dict) -> None:
    cols = ["seeds", "reached", "time_to_target_s", "time_to_target_range",
            *[f"loss_at_{t:g}s" for t in CHECKPOINTS], "final_loss", "final_loss_range", "steps", "ms_per_step"]
    print("| variant | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join("—" if row[c] is None else str(row[c]) for c in cols) + " |")


def main() -> None:
    if "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        recipe, out = sys.argv[i + 1], sys.argv[i + 2]
        worker(recipe, sys.argv[sys.argv.index("--") + 1:], out)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="configs/shakespeare-char-gpt.yaml")
    ap.add_argument("--variants", nargs="+", default=[], choices=list(VARIANTS))
    ap.add_argument("--define", nargs="+", default=[], metavar="NAME=K=V,K=V",
                    help="extra variants: a name and its comma-separated overrides (e.g. fast=model.qk_norm=true)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=float, default=160.0, help="seconds of training per run (train.max_seconds)")
    ap.add_argument("--steps", type=int, default=None, help="train.steps (the schedule's length); default: recipe's")
    ap.add_argument("--target", type=float, default=1.886)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--nanogpt", default=None, help="a checkout of karpathy/nanoGPT (adds its baby GPT as a row)")
    ap.add_argument("--nanogpt-eval-iters", type=int, default=200)
    ap.add_argument("--nanogpt-eval-interval", type=int, default=500,
                    help="nanoGPT evaluates every this many iterations (each: 2 x eval-iters forward batches)")
    ap.add_argument("--out", default="bench/out/speedrun.json")
    ap.add_argument("--reprint", nargs="+", default=None, metavar="JSON", help="summarise earlier results, stop")
    args = ap.parse_args()
    if args.reprint:
        return reprint(args.reprint, args.target)
    for spec in args.define:
        name, _, overrides = spec.partition("=")
        VARIANTS[name] = [o for o in overrides.split(",") if o]
        args.variants.append(name)
    args.variants = args.variants or list(VARIANTS)
    runs: dict[str, list[dict]] = {}
    for name in args.variants:
        for seed in args.seeds:
            run = run_genlab(args, name, VARIANTS[name], seed)
            runs.setdefault(name, []).append({"seed": seed, **run})
            print(f"{name} seed {seed}: {run['steps']} steps in {run['train_seconds']} s, "
                  f"val {[(p['seconds'], p['loss']) for p in run['points']]}", file=sys.stderr, flush=True)
    for seed in args.seeds if args.nanogpt else []:
        if (run := run_nanogpt(args, seed)) is not None:
            runs.setdefault("nanogpt-baby", []).append({"seed": 1337 + seed, **run})
            val = [(p["seconds"], p["loss"]) for p in run["points"]]
            print(f"nanogpt seed {1337 + seed}: {run['steps']} iterations in {run['train_seconds']} s "
                  f"({run['median_ms_per_iter']} ms median), val {val}", file=sys.stderr, flush=True)
    if not args.nanogpt:
        print("nanoGPT: no --nanogpt DIR given; its row is skipped", file=sys.stderr)
    table = {name: summarise(r, args.target) for name, r in runs.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"recipe": args.recipe, "budget": args.budget, "target": args.target,
                               "val_every": args.val_every, "variants": {k: VARIANTS.get(k) for k in runs},
                               "table": table, "runs": runs}, indent=2))
    print_table(table)


if __name__ == "__main__":
    main()
