"""Benchmark: reward-guided Tang verse (issue 17). Not a test; one torch thread, pin it to one core.

    python bench/tang_reward.py titles /usr/share/games/fortunes/tang300 titles     # the prompts
    python bench/tang_reward.py bon titles-test.txt RUN [RUN ...]                     # after genlab finetune
    python bench/tang_reward.py plot docs/img/tang_reward_kl.png RUN [RUN ...]        # after genlab eval

`titles` writes the first line (《title》) of each poem, one a line, deduplicated and shuffled (seed 0) into
titles-test.txt (100 titles, held out from every method) and titles-train.txt (the rest: GRPO's prompts, and the
prompts DPO's pairs are drawn for). `bon` takes GRPO/DPO runs tuned from one base and, on the held-out titles,
reports best-of-n from the reference (the base) at n = 1, 2, 4, ..., 32 for seeds 0, 1, 2 (share of regular verse;
KL log n - (n - 1) / n) and, for each run and its reference, one completion per title: regular-verse share, 5- vs
7-character clauses and body lines (does the policy write short poems?). Writes bench/out/tang_reward.json. `plot`
draws each run's `genlab eval` (mean reward, KL) beside that best-of-n curve.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlab.metrics.text import regular_verse  # noqa: E402
from genlab.modalities.prefs.data import encoder_of, read_prompts  # noqa: E402
from genlab.modalities.prefs.sampling import best_of_n, sample_completions  # noqa: E402
from genlab.modalities.text.data import read_documents  # noqa: E402
from genlab.nn.decoding import SamplingConfig  # noqa: E402
from genlab.pipeline import open_run  # noqa: E402
from genlab.rewards import load_reward  # noqa: E402


def titles(corpus: str, stem: str, held_out: int = 100) -> None:
    records = read_documents(corpus, "fortune")
    unique = list(dict.fromkeys(r.strip().splitlines()[0].strip() for r in records))  # 《无题》 titles many poems
    found = [unique[i] for i in np.random.default_rng(0).permutation(len(unique))]
    for name, part in (("test", found[:held_out]), ("train", found[held_out:])):
        Path(f"{stem}-{name}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
        print(f"{len(part)} titles -> {stem}-{name}.txt")


def shapes(texts: list[str]) -> dict:
    found = [regular_verse(t) for t in texts]
    return {"regular": float(np.mean([f["regular"] for f in found])),
            "clause_5": sum(f["clause_length"] == 5 for f in found),
            "clause_7": sum(f["clause_length"] == 7 for f in found),
            "mean_body_lines": float(np.mean([f["lines"] for f in found]))}


def bon(prompt_file: str, runs: list[str], tokens: int = 120) -> None:
    torch.set_num_threads(1)
    reward = load_reward("regular_verse")
    cfg = SamplingConfig(max_new_tokens=tokens)
    first = open_run(runs[0])
    prompts = read_prompts(prompt_file)
    encoder = encoder_of(first.dataset)
    ns = [1, 2, 4, 8, 16, 32]
    seeds = [best_of_n(first.model, encoder, prompts, reward, ns, cfg, seed=s) for s in range(3)]
    found = {str(n): {"reward": [s[n]["reward"] for s in seeds], "kl": seeds[0][n]["kl"]} for n in ns}
    result = {"prompts": len(prompts), "completion_tokens": tokens, "best_of_n": found, "runs": {}}
    print("best-of-n (3 seeds): " + ", ".join(
        f"n={n}: {np.mean(v['reward']):.3f} +- {np.std(v['reward'], ddof=1):.3f} at KL {v['kl']:.2f}"
        for n, v in found.items()), flush=True)
    for path in runs:
        run = open_run(path)
        g, g_ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)  # the same base draw each run
        mine = [sample_completions(run.model.net, encoder, p, 1, cfg, g).texts[0] for p in prompts]
        with run.model.reference_net() as ref:
            theirs = [sample_completions(ref, encoder, p, 1, cfg, g_ref).texts[0] for p in prompts]
        result["runs"][path] = {"policy": shapes(mine), "reference": shapes(theirs), "policy_samples": mine[:5]}
        print(path, json.dumps({k: result["runs"][path][k] for k in ("policy", "reference")}), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tang_reward.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def plot(out: str, runs: list[str]) -> None:
    import yaml
    from reward_kl import draw

    tuned: dict[str, list] = {}
    for path in runs:
        policy = json.loads((Path(path) / "metrics.json").read_text())["policy"]
        train = yaml.safe_load((Path(path) / "config.yaml").read_text())["train"]
        rounds = re.search(r"-r(\d+)-", Path(path).name)  # on-policy DPO rounds, KL from the first base
        method = train["objective"].upper() + (" (on-policy rounds)" if rounds else "")
        tuned.setdefault(method, []).append((policy["kl"]["mean"], policy["reward"]["policy_mean"],
                                             f"r{rounds[1]}" if rounds else f"b{train['beta']:g}"))
    found = json.loads((ROOT / "bench" / "out" / "tang_reward.json").read_text())["best_of_n"]
    draw(tuned, [(v["kl"], float(np.mean(v["reward"]))) for v in found.values()], "share of regular verse",
         Path(out), bon_errors=[float(np.std(v["reward"], ddof=1)) for v in found.values()])


if __name__ == "__main__":
    if sys.argv[1:2] == ["titles"] and len(sys.argv) == 4:
        titles(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["bon"] and len(sys.argv) > 3:
        bon(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["plot"] and len(sys.argv) > 3:
        plot(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
