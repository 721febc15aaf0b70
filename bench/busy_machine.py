"""Benchmark: genlab trainings sharing the CPU, with torch's default threads vs genlab's (genlab.core.threads).
Not a test.

    python bench/busy_machine.py [--recipes vae ddpm gpt] [--variants old new] [--repeats 2] [--mechanism]

For each recipe, repeat and variant: one training alone, then two identical trainings started at the same
moment. The figure is each run's steps per second from its train_summary.json (steps / train_seconds, which
leaves out start-up); runs stop at their step count or after 60 s of training. Variants:

    old      what genlab did before: torch's default thread count (one per CPU; pinned here with
             train.threads=N, N read from a fresh `import torch`), OpenMP's default wait policy
    new      genlab's default now: the trainer's ThreadGovernor (threads = CPUs others leave free, re-checked
             every 2 s), no train.threads
    passive  torch's default count with OMP_WAIT_POLICY=PASSIVE (idle OpenMP workers sleep at once)
    spin10k  torch's default count with GOMP_SPINCOUNT=10000 (workers spin ~0.25 ms instead of ~7 ms)
    one      train.threads=1

Children run with a clean environment (no OMP_*, GOMP_*, KMP_*, MKL_NUM_THREADS) and no CPU pinning. Before
each measurement the script waits (at most --wait seconds) until other processes keep fewer than --quiet CPUs
busy for two 1-s looks, and records what it saw (/proc/loadavg, the busiest processes of `top`) and how many
CPUs other processes kept busy on average during the measurement (/proc/stat less the children's CPU time).
--mechanism checks when the wait policy takes effect: OMP_WAIT_POLICY set in os.environ before vs after
`import torch` (process CPU time over wall time of a loop of parallel ops and 2-ms sleeps: ~1 when the idle
worker spins through the sleeps). Writes bench/out/busy_machine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlab.core.threads import others_busy_cpus, read_cpu_times, ticks_per_second, usable_cpus  # noqa: E402

COMMON = ["train.val_every=0", "train.checkpoint_every=0", "train.log_every=1000000", "train.max_seconds=60"]
RECIPES = {
    "vae": ["configs/digits-vae.yaml", "train.steps=6000"],
    "ddpm": ["configs/digits-ddpm.yaml", "train.steps=400"],
    "gpt": ["configs/shakespeare-char-gpt.yaml", "data.block_size=32", "train.steps=1000"],
}
# name: (environment, train.* overrides); "{default}" is torch's default thread count on this machine.
VARIANTS = {
    "old": ({}, ["train.threads={default}"]),
    "new": ({}, []),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["train.threads={default}"]),
    "spin10k": ({"GOMP_SPINCOUNT": "10000"}, ["train.threads={default}"]),
    "one": ({}, ["train.threads=1"]),
}
CLEARED = ("OMP_", "GOMP_", "KMP_", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# The child: `genlab ARGS...`, with the trainer's thread decisions (genlab.core.threads) logged to stderr.
CHILD = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
logging.getLogger("genlab.core.threads").setLevel(logging.DEBUG)
sys.argv = ["genlab", *sys.argv[1:]]
from genlab.cli import main
main()
"""


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
    env.update({"GENLAB_QUIET": "1", "PYTHONPATH": str(ROOT / "src"), **extra})
    return env


def machine_load(quiet: float, wait: float) -> dict:
    """Wait until others keep fewer than `quiet` CPUs busy (at most `wait` s); what the machine looked like."""
    cpus = usable_cpus()
    deadline = time.time() + wait
    seen = [others_busy_cpus(cpus, window=1.0)]
    while max(seen[-2:]) >= quiet and time.time() < deadline:  # two looks in a row below `quiet`
        time.sleep(4)
        seen.append(others_busy_cpus(cpus, window=1.0))
    busy = seen[-1]
    top = subprocess.run(["top", "-bn1", "-w", "200"], capture_output=True, text=True).stdout.splitlines()
    header = next((i for i, line in enumerate(top) if line.lstrip().startswith("PID")), len(top))
    return {"others_busy_cpus": round(busy, 2), "loadavg": Path("/proc/loadavg").read_text().split()[:4],
            "top": [" ".join(line.split()[8:9] + line.split()[11:]) for line in top[header + 1:header + 4]]}


def torch_default_threads() -> int:
    """torch's own thread count in a fresh process with a clean environment (what genlab used before)."""
    code = "import torch; print(torch.get_num_threads())"
    return int(subprocess.run([sys.executable, "-c", code], env=clean_env({}), capture_output=True, text=True,
                              check=True).stdout)


def start(recipe: str, variant: str, tmp: str, tag: str, default: int, scale: float) -> tuple[subprocess.Popen, Path]:
    env, threads = VARIANTS[variant]
    config, *overrides = RECIPES[recipe]
    overrides = [f"train.steps={max(1, round(int(o.split('=')[1]) * scale))}" if o.startswith("train.steps=") else o
                 for o in overrides]
    out = Path(tmp) / tag
    args = ["train", config, *overrides, *COMMON, *(t.format(default=default) for t in threads), f"name={tag}",
            "--runs-dir", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=clean_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out / tag


def collect(proc: subprocess.Popen, run: Path, t0: float) -> dict:
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"training failed ({proc.returncode}): {err[-2000:]}")
    prefix = "genlab.core.threads torch threads "
    threads = [int(line[len(prefix):].split()[0]) for line in err.splitlines() if line.startswith(prefix)]
    summary = json.loads((run / "train_summary.json").read_text())
    return {"steps": summary["steps"], "train_seconds": summary["train_seconds"],
            "steps_per_second": round(summary["steps"] / summary["train_seconds"], 3),
            "wall_seconds": round(wall, 1), "threads": threads}


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(recipe: str, variant: str, together: int, default: int, scale: float) -> tuple[list[dict], float]:
    """The runs' figures, and how many CPUs other processes kept busy on average while they ran."""
    with tempfile.TemporaryDirectory() as tmp:
        ticks, own = read_cpu_times(), children_cpu_seconds()
        t0 = time.perf_counter()
        procs = [start(recipe, variant, tmp, f"{recipe}-{variant}-{i}", default, scale) for i in range(together)]
        runs = [collect(p, run, t0) for p, run in procs]
        wall = time.perf_counter() - t0
        after = read_cpu_times()
        busy = sum(after[c][0] - ticks[c][0] for c in usable_cpus() if c in ticks and c in after)
        others = (busy / ticks_per_second() - (children_cpu_seconds() - own)) / wall
        return runs, round(max(0.0, others), 2)


def mechanism() -> dict:
    """Process CPU time over wall time of 2 threads doing a parallel op, then sleeping 2 ms, 200 times:
    ~1 when the idle worker spins through the sleeps, ~0.2 when it sleeps too."""
    code = """
import os, sys, time
if sys.argv[1] == "before": os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
import torch
if sys.argv[1] == "after": os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
torch.set_num_threads(2)
x = torch.randn(2_000_000)
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(200):
    y = x * 2.0
    time.sleep(0.002)
print(round((time.process_time() - c0) / (time.perf_counter() - t0), 2))
"""
    cases = {"unset": ("none", {}), "os.environ before import torch": ("before", {}),
             "os.environ after import torch": ("after", {}), "shell OMP_WAIT_POLICY=PASSIVE": ("none", {
                 "OMP_WAIT_POLICY": "PASSIVE"}), "shell GOMP_SPINCOUNT=10000": ("none", {"GOMP_SPINCOUNT": "10000"})}
    return {name: float(subprocess.run([sys.executable, "-c", code, mode], env=clean_env(env), check=True,
                                       capture_output=True, text=True).stdout)
            for name, (mode, env) in cases.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--variants", nargs="+", default=["old", "new"], choices=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["alone", "together"], choices=["alone", "together"])
    ap.add_argument("--quiet", type=float, default=0.3, help="wait until others keep fewer CPUs busy than this")
    ap.add_argument("--wait", type=float, default=120, help="longest wait for a quiet machine, seconds")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the recipes' step counts")
    ap.add_argument("--mechanism", action="store_true")
    ap.add_argument("--out", default="bench/out/busy_machine.json")
    args = ap.parse_args()
    default = torch_default_threads()
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": sorted(usable_cpus()),
                     "torch_default_threads": default, "recipes": {k: RECIPES[k] for k in args.recipes},
                     "scale": args.scale, "common": COMMON, "runs": []}
    if args.mechanism:
        results["mechanism_cpu_over_wall"] = mechanism()
        print(json.dumps(results["mechanism_cpu_over_wall"]), flush=True)
    for recipe in args.recipes:
        for repeat in range(args.repeats):
            for variant in args.variants:
                for mode in args.modes:
                    load = machine_load(args.quiet, args.wait)
                    runs, others = measure(recipe, variant, 2 if mode == "together" else 1, default, args.scale)
                    row = {"recipe": recipe, "variant": variant, "mode": mode, "repeat": repeat, "load": load,
                           "others_busy_cpus_during": others, "runs": runs}
                    results["runs"].append(row)
                    print(json.dumps({k: row[k] for k in ("recipe", "variant", "mode", "repeat")}),
                          load["others_busy_cpus"], others, load["loadavg"],
                          [(r["threads"], r["steps_per_second"], r["wall_seconds"]) for r in runs], flush=True)
    results["summary"] = summarise(results["runs"])
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["summary"], indent=2))


def summarise(rows: list[dict]) -> dict:
    """Median steps/s per recipe, variant and mode (together: over both runs of every repeat), and together as
    a share of alone."""
    table: dict = {}
    for row in rows:
        cell = table.setdefault(row["recipe"], {}).setdefault(row["variant"], {})
        cell.setdefault(row["mode"], []).extend(r["steps_per_second"] for r in row["runs"])
    for variants in table.values():
        for cell in variants.values():
            for mode in list(cell):
                cell[mode] = round(statistics.median(cell[mode]), 3)
            if "alone" in cell and "together" in cell:
                cell["together_share_of_alone"] = round(cell["together"] / cell["alone"], 3)
    return table


if __name__ == "__main__":
    main()
