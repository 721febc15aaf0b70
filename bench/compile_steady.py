"""Benchmark: torch.compile vs eager in steady state (150 and 300 compiled steps, 300 eager), the Tiny
Shakespeare GPT at batch 64 on one core. Not a test.

    python bench/compile_steady.py

The difference between the two compiled runs is the cost of 150 steps with compilation out of the way.
Writes bench/out/compile_steady.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from scaling import run

RECIPE = "configs/shakespeare-char-gpt.yaml"


def main() -> None:
    results = {f"compile {n}": run(RECIPE, n, ["train.batch_size=64", "train.compile=true"]) for n in (150, 300)}
    results["eager 300"] = run(RECIPE, 300, ["train.batch_size=64"])
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/compile_steady.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
