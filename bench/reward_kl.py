"""Benchmark: reward against KL(policy || reference) for preference tuning (issue 17). Not a test; one torch
thread, pin it to one core.

    OMP_NUM_THREADS=1 taskset -c 1 python bench/reward_kl.py --toy
    OMP_NUM_THREADS=1 taskset -c 1 python bench/reward_kl.py --base runs/fortunes-gpt --prompts prompts.txt \\
        --reward sentiment --objective dpo --betas 0.03 0.1 0.3 1

For each strength beta a LoRA fine-tune of BASE (train.objective=dpo on pairs `genlab data prefs` ranks with the
reward once, or =grpo on the prompts directly), each evaluated on held-out prompts: mean reward and the Monte
Carlo KL(policy || reference) per completion. On the same axes, best-of-n sampling from the reference at
n = 2..32, whose KL is log n - (n - 1) / n. `--toy` trains a tiny character GPT on "PROMPT: yes no ..." lines
first and uses the reward keyword=yes (a couple of minutes on one core: checks the machinery, not a result).
Writes bench/out/reward_kl.json and bench/out/reward_kl.png.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlab.config import config_from_dict  # noqa: E402
from genlab.modalities.prefs.data import encoder_of  # noqa: E402
from genlab.modalities.prefs.sampling import best_of_n, build_prefs, read_prompts, reward_and_kl  # noqa: E402
from genlab.nn.decoding import SamplingConfig  # noqa: E402
from genlab.pipeline import finetune, open_run, train_config  # noqa: E402
from genlab.rewards import load_reward  # noqa: E402


def toy_base(folder: Path) -> tuple[Path, Path]:
    words = ["say", "tell", "pick", "give", "show", "name", "list", "read"]
    rng = random.Random(0)
    corpus = folder / "corpus"
    corpus.write_text("\n%\n".join(f"{words[i % 8]}: " + " ".join(rng.choice(["yes", "no"]) for _ in range(4))
                                   for i in range(160)) + "\n")
    cfg = config_from_dict({"name": "toy-base", "family": "gpt",
                            "data": {"source": "fortune", "path": str(corpus), "block_size": 48},
                            "model": {"layers": 1, "heads": 2, "width": 32},
                            "train": {"steps": 150, "batch_size": 16, "lr": 1e-2, "val_every": 0}})
    run, _ = train_config(cfg, folder / "runs")
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(f"{w}:" for w in words * 4) + "\n")
    return run.root, prompts


def draw(tuned: dict[str, list[tuple[float, float, str]]], bon: list[tuple[float, float]], ylabel: str,
         path: Path, bon_errors: list[float] | None = None) -> None:
    """Reward against KL(policy || reference): each tuned method's points (kl, reward, label) and best-of-n
    from the reference (its KL bound log n - (n - 1) / n) on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, points), marker in zip(tuned.items(), "o^vD", strict=False):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker, label=name, alpha=0.8)
        for kl, reward, label in points:
            ax.annotate(label, (kl, reward), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.errorbar([b[0] for b in bon], [b[1] for b in bon], yerr=bon_errors, fmt="s--", color="gray",
                label="best-of-n from the reference (n = 1, 2, 4, ...)")
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xlabel("KL(policy || reference), nats per completion")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--base", type=Path)
    ap.add_argument("--prompts", type=Path)
    ap.add_argument("--reward", default="keyword=yes")
    ap.add_argument("--objective", choices=("dpo", "grpo"), default="dpo")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--k", type=int, default=8, help="completions per prompt (pairs; GRPO's group)")
    ap.add_argument("--tokens", type=int, default=32, help="longest completion")
    ap.add_argument("--eval-prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8, help="completions per held-out prompt")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reward-kl-"))
    base, prompts = toy_base(work) if args.toy else (args.base, args.prompts)
    if base is None or prompts is None:
        ap.error("give --base RUN and --prompts FILE, or --toy")
    reward = load_reward(args.reward)
    cfg = SamplingConfig(max_new_tokens=args.tokens)
    data = {"val_fraction": 0.25, "test_fraction": 0.0}
    if args.objective == "dpo":
        pairs = work / "pairs.jsonl"
        print(build_prefs(open_run(base), reward, read_prompts(prompts), args.k, pairs, 0, cfg))
        data.update(source="prefs", path=str(pairs))
    else:
        data.update(source="prompts", path=str(prompts), reward=args.reward)
    points = []
    for beta in args.betas:
        overrides = [f"name=beta-{beta}", f"train.objective={args.objective}", f"train.beta={beta}",
                     f"train.steps={args.steps}", "train.batch_size=4", "train.lr=5e-3", "train.val_every=0",
                     f"train.group_size={args.k}", f"train.completion_tokens={args.tokens}",
                     *[f"data.{k}={v}" for k, v in data.items()]]
        run, _ = finetune(base, None, overrides, runs_dir=work / "runs")
        tuned = open_run(run.root)
        split = "test" if len(tuned.dataset.splits["test"]) else "val"
        held_out = tuned.dataset.split_prompts(split)[: args.eval_prompts]
        found = reward_and_kl(tuned.model, encoder_of(tuned.dataset), held_out, reward, args.samples, cfg)
        points.append({"beta": beta, "reward": found["reward"]["policy_mean"], "kl": found["kl"]["mean"],
                       "kl_stderr": found["kl"]["stderr"], "reference_reward": found["reward"]["reference_mean"]})
        print(points[-1])
    bon = best_of_n(tuned.model, encoder_of(tuned.dataset), held_out, reward, [2, 4, 8, 16, 32], cfg)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    result = {"objective": args.objective, "reward": args.reward, "toy": args.toy, "tuned": points,
              "best_of_n": {str(n): v for n, v in bon.items()}}
    (out / "reward_kl.json").write_text(json.dumps(result, indent=2))
    draw({args.objective: [(p["kl"], p["reward"], f"{p['beta']:g}") for p in points]},
         [(v["kl"], v["reward"]) for v in bon.values()], f"mean reward ({args.reward})", out / "reward_kl.png")
    print("| beta | mean reward | KL |\n|---|---|---|")
    for p in points:
        print(f"| {p['beta']:g} | {p['reward']:.3f} | {p['kl']:.2f} |")
    print("best-of-n: " + ", ".join(f"n={n}: {v['reward']:.3f} at KL {v['kl']:.2f}" for n, v in bon.items()))


if __name__ == "__main__":
    main()
