"""Benchmark (issue 17): raise the sentiment of generated English fortunes (reward `sentiment`, VADER) and check
what it costs: diversity (distinct-2 of the completions) and held-out perplexity (the tuned policy on the base's
test fortunes), with best-of-n from the base beside every tuned run. Not a test; one torch thread, pin a core.

    python bench/fortunes_sentiment.py prompts openers.txt          # the first 4 words of every fortune
    genlab train configs/fortunes-bpe-gpt.yaml name=fortunes-base   # the base (10 minutes on one core)
    genlab finetune runs/fortunes-base bench/recipes/fortunes-grpo.yaml data.path=openers.txt train.beta=0.1 \\
        name=fortunes-grpo-b0.1
    python bench/fortunes_sentiment.py measure runs/fortunes-base runs/fortunes-grpo-b0.1 [RUN ...]
    python bench/fortunes_sentiment.py plot docs/img/fortunes_reward_kl.png     # from the last measure

`measure` uses the first --prompts test prompts of the first tuned run (every run must share them): per run, one
completion per prompt (temperature 1, --tokens at most) from the policy and one from the base, their mean sentiment
and distinct-2, the Monte Carlo KL(policy || base) over whole completions (genlab eval's estimate), and the
perplexity of the base's test split under the policy and under the base. Best-of-n (n = 1..16) from the base on
the same prompts: mean sentiment, the KL bound log n - (n-1)/n, and distinct-2 of the chosen completions.
Writes bench/out/fortunes_sentiment.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlab.metrics.text import distinct_n  # noqa: E402
from genlab.modalities.prefs.data import encoder_of  # noqa: E402
from genlab.modalities.prefs.sampling import best_of_n_kl, reward_and_kl, sample_completions  # noqa: E402
from genlab.modalities.text.data import read_documents  # noqa: E402
from genlab.nn.decoding import SamplingConfig  # noqa: E402
from genlab.pipeline import open_run  # noqa: E402
from genlab.rewards import load_reward  # noqa: E402

FORTUNES = ["cookie", "computers", "definitions", "people", "science", "politics", "work", "wisdom"]


def prompts(out: str, folder: str = "/usr/share/games/fortunes", words: int = 4) -> None:
    """The first `words` words of every fortune of the recipe's eight files, one opener a line, deduplicated."""
    seen, lines = set(), []
    for name in FORTUNES:
        for record in read_documents(Path(folder, name), "fortune"):
            opener = " ".join(record.split()[:words])
            if len(opener.split()) == words and opener not in seen:
                seen.add(opener)
                lines.append(opener)
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} openers -> {out}")


def perplexity(model, dataset) -> float:
    return float(model.test_likelihood(dataset, None, binarize=False)["perplexity"])


def measure(base_path: str, runs: list[str], n_prompts: int, tokens: int, ns: list[int]) -> None:
    torch.set_num_threads(1)
    reward = load_reward("sentiment")
    cfg = SamplingConfig(max_new_tokens=tokens)
    base = open_run(base_path)
    first = open_run(runs[0])
    chosen = first.dataset.split_prompts("test")[:n_prompts]
    encoder = encoder_of(first.dataset)
    result = {"prompts": len(chosen), "completion_tokens": tokens, "base": base_path,
              "base_test_perplexity": perplexity(base.model, base.dataset), "runs": {}}
    # best-of-n from the base (the tuned runs' reference), with the diversity of what it picks
    g = torch.Generator().manual_seed(1)
    with first.model.reference_net() as ref:
        drawn = [sample_completions(ref, encoder, p, max(ns), cfg, g).texts for p in chosen]
    scores = [reward.many([p] * len(t), t) for p, t in zip(chosen, drawn, strict=True)]
    result["best_of_n"] = {}
    for n in ns:
        picks = [t[int(np.argmax(s[:n]))] for t, s in zip(drawn, scores, strict=True)]
        result["best_of_n"][str(n)] = {"sentiment": float(np.mean([max(s[:n]) for s in scores])),
                                       "kl_bound": best_of_n_kl(n), "distinct_2": distinct_n(picks, 2)}
    print("best-of-n:", json.dumps(result["best_of_n"]), flush=True)
    for path in runs:
        run = open_run(path)
        if run.dataset.split_prompts("test")[:n_prompts] != chosen:
            raise SystemExit(f"{path}: its test prompts differ from {runs[0]}'s; tune every run on one prompt file")
        g, g_ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)  # the same base draw each run
        mine = [sample_completions(run.model.net, encoder, p, 1, cfg, g).texts[0] for p in chosen]
        with run.model.reference_net() as ref:
            theirs = [sample_completions(ref, encoder, p, 1, cfg, g_ref).texts[0] for p in chosen]
        kl = reward_and_kl(run.model, encoder, chosen, None, 1, cfg, seed=3)["kl"]
        result["runs"][path] = {
            "policy": {"sentiment": float(np.mean(reward.many(chosen, mine))), "distinct_2": distinct_n(mine, 2),
                       "mean_words": float(np.mean([len(t.split()) for t in mine]))},
            "reference": {"sentiment": float(np.mean(reward.many(chosen, theirs))),
                          "distinct_2": distinct_n(theirs, 2),
                          "mean_words": float(np.mean([len(t.split()) for t in theirs]))},
            "kl": kl, "test_perplexity": perplexity(run.model, base.dataset), "policy_samples": mine[:5]}
        print(path, json.dumps({k: v for k, v in result["runs"][path].items() if k != "policy_samples"}), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fortunes_sentiment.json").write_text(json.dumps(result, indent=2) + "\n")


def plot(out: str, found: str) -> None:
    from reward_kl import draw

    result = json.loads(Path(found).read_text())
    runs = [(v["kl"]["mean"], v["policy"]["sentiment"], Path(k).name.removeprefix("fgrpo-"))
            for k, v in result["runs"].items()]
    bon = result["best_of_n"].values()
    draw({"GRPO": runs}, [(v["kl_bound"], v["sentiment"]) for v in bon], "mean sentiment (VADER compound)",
         Path(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prompts")
    p.add_argument("out")
    p.add_argument("--folder", default="/usr/share/games/fortunes")
    m = sub.add_parser("measure")
    m.add_argument("base")
    m.add_argument("runs", nargs="+")
    m.add_argument("--prompts", type=int, default=100)
    m.add_argument("--tokens", type=int, default=40)
    m.add_argument("--ns", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    d = sub.add_parser("plot")
    d.add_argument("out")
    d.add_argument("--result", default=str(ROOT / "bench" / "out" / "fortunes_sentiment.json"))
    args = ap.parse_args()
    if args.command == "prompts":
        prompts(args.out, args.folder)
    elif args.command == "plot":
        plot(args.out, args.result)
    else:
        measure(args.base, args.runs, args.prompts, args.tokens, args.ns)


if __name__ == "__main__":
    main()
