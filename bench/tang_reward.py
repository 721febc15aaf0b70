"""Benchmark: reward-guided Tang verse (issue 17). Not a test; one torch thread, pin it to one core.

    python bench/tang_reward.py titles /usr/share/games/fortunes/tang300 titles.txt   # the prompts
    python bench/tang_reward.py bon RUN [RUN ...]                                     # after genlab finetune

`titles` writes the first line (《title》) of each poem, one a line: the prompts of bench/recipes/tang-grpo.yaml.
`bon` takes GRPO/DPO runs tuned from one base on those prompts and, on the first 100 test prompts of the first
run (the prompts `genlab eval` uses), reports best-of-n from the reference (the base) at n = 1, 2, 4, 8, 16
(share of regular verse; KL log n - (n - 1) / n) and, for each run and its reference, one completion per
prompt: regular-verse share, 5- vs 7-character clauses and body lines (does the policy write short poems?).
Writes bench/out/tang_reward.json.
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
from genlab.modalities.prefs.data import encoder_of  # noqa: E402
from genlab.modalities.prefs.sampling import best_of_n, sample_completions  # noqa: E402
from genlab.nn.decoding import SamplingConfig  # noqa: E402
from genlab.pipeline import open_run  # noqa: E402
from genlab.rewards import load_reward  # noqa: E402


def titles(corpus: str, out: str) -> None:
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", Path(corpus).read_text(encoding="utf-8"))
    records = [r.strip() for r in re.split(r"\n%\n", text) if r.strip()]
    Path(out).write_text("\n".join(r.splitlines()[0].strip() for r in records) + "\n", encoding="utf-8")
    print(f"{len(records)} titles -> {out}")


def shapes(texts: list[str]) -> dict:
    found = [regular_verse(t) for t in texts]
    return {"regular": float(np.mean([f["regular"] for f in found])),
            "clause_5": sum(f["clause_length"] == 5 for f in found),
            "clause_7": sum(f["clause_length"] == 7 for f in found),
            "mean_body_lines": float(np.mean([f["lines"] for f in found]))}


def bon(runs: list[str], n_prompts: int = 100, tokens: int = 120) -> None:
    torch.set_num_threads(1)
    reward = load_reward("regular_verse")
    cfg = SamplingConfig(max_new_tokens=tokens)
    first = open_run(runs[0])
    prompts = first.dataset.split_prompts("test")[:n_prompts]
    encoder = encoder_of(first.dataset)
    found = best_of_n(first.model, encoder, prompts, reward, [1, 2, 4, 8, 16], cfg)
    result = {"prompts": len(prompts), "completion_tokens": tokens,
              "best_of_n": {str(n): v for n, v in found.items()}, "runs": {}}
    print("best-of-n: " + ", ".join(f"n={n}: {v['reward']:.2f} at KL {v['kl']:.2f}" for n, v in found.items()))
    for path in runs:
        run = open_run(path)
        assert run.dataset.split_prompts("test")[:n_prompts] == prompts, "runs must share their prompts"
        g = torch.Generator().manual_seed(7)
        mine = [sample_completions(run.model.net, encoder, p, 1, cfg, g).texts[0] for p in prompts]
        with run.model.reference_net() as ref:
            theirs = [sample_completions(ref, encoder, p, 1, cfg, g).texts[0] for p in prompts]
        result["runs"][path] = {"policy": shapes(mine), "reference": shapes(theirs), "policy_samples": mine[:5]}
        print(path, json.dumps({k: result["runs"][path][k] for k in ("policy", "reference")}))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tang_reward.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["titles"] and len(sys.argv) == 4:
        titles(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["bon"] and len(sys.argv) > 2:
        bon(sys.argv[2:])
    else:
        sys.exit(__doc__)
