"""Benchmark: how `genlab eval` of a language model grows with its training text (issue 22). Not a test.

    python bench/text_eval_scaling.py scaling [--sizes 1000000 4000000 16000000] [--stdlib] [--old 1M]
    python bench/text_eval_scaling.py compare RUN
    OMP_NUM_THREADS=1 taskset -c 1 python bench/text_eval_scaling.py index [--sizes ...] [--old 1000000]

scaling: corpora of Python's standard library, the .py files (sorted by path, UTF-8, no site-packages)
concatenated into one .txt and cut to N characters, and with --stdlib the top-level files alone (4,698,280
characters, the issue's corpus). A tiny character GPT is trained on each (20 steps: the point is the eval),
then `genlab eval` is timed as a subprocess pinned to one core (--core, one torch thread), wall clock and
CPU seconds from start to exit, beside the steps' times from metrics.json. For the corpora in --old the same
eval is timed with the source of commit ad94aa9 (the index before issue 22; PYTHONPATH to a `git archive`
of it), and the memorisation blocks of the two metrics.json are compared.

compare: `genlab eval` of an existing run with the old source and with today's: prints both memorisation
blocks and whether they are identical (the samples are the same: same seed, same sampling code).

index: the memorisation index alone, on the first N characters of the same concatenation, with the load
of a corpus of many documents: 50 queries (30 passages of 2,000 characters from beyond the first N, 10
passages from inside it, 10 of those with a NUL spliced in); CPU seconds to build the index and answer them,
today's and (for the sizes in --old) ad94aa9's, and whether the two give the same overlaps.

Writes bench/out/text_eval_scaling.json (scaling) and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEFORE = "ad94aa9"  # the last commit with the window-hash index
LIB = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
OUT = Path("bench/out/text_scaling")
SRC = Path(__file__).resolve().parents[1] / "src"


def stdlib_files(top_level_only: bool) -> list[Path]:
    files = sorted(LIB.glob("*.py")) if top_level_only else sorted(LIB.rglob("*.py"))
    return [f for f in files if "site-packages" not in f.parts and f.is_file()]


def write_corpus(path: Path, chars: int | None, top_level_only: bool = False) -> int:
    parts, total = [], 0
    for f in stdlib_files(top_level_only):
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if chars is not None and total >= chars:
            break
    corpus = "".join(parts)[:chars]
    if chars is not None and len(corpus) < chars:
        raise SystemExit(f"only {len(corpus)} characters of .py files under {LIB}")
    path.write_text(corpus, encoding="utf-8")
    return len(corpus)


def genlab(args: list, core: int, src: Path = SRC) -> dict:
    """Run `genlab ARGS` pinned to one core with one thread; its wall-clock and CPU seconds (the CPU time is
    what to compare when other processes share the core)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENLAB_QUIET": "1", "PYTHONPATH": str(src)}
    argv = ["genlab", *map(str, args)]
    code = f"import sys, torch; torch.set_num_threads(1); from genlab.cli import main; sys.argv = {argv!r}; main()"
    t0, cpu0 = time.perf_counter(), _children_cpu()
    subprocess.run(["taskset", "-c", str(core), sys.executable, "-c", code], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return {"wall": round(time.perf_counter() - t0, 2), "cpu": round(_children_cpu() - cpu0, 2)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def old_source(folder: Path) -> Path:
    """The src/ folder of commit BEFORE, unpacked under `folder`."""
    archive = subprocess.run(["git", "archive", BEFORE, "src"], check=True, capture_output=True,
                             cwd=SRC.parent).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def evaluate(run: Path, core: int, src: Path = SRC) -> dict:
    seconds = genlab(["eval", run], core, src)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"eval_seconds": seconds, "timings_seconds": metrics["timings_seconds"],
            "memorisation": metrics["memorisation"]}


def train_tiny(corpus: Path, name: str, core: int) -> Path:
    """A 2-layer, 32-wide character GPT trained for 20 steps: the eval's cost, not the model, is measured."""
    (OUT / "tiny.yaml").write_text("family: gpt\n")
    genlab(["train", OUT / "tiny.yaml", f"name={name}", "data.source=txt", f"data.path={corpus.resolve()}",
            "data.tokenizer=char", "data.block_size=64", "model.layers=2", "model.heads=2", "model.width=32",
            "train.steps=20", "train.batch_size=8", "train.val_every=0", "train.checkpoint_every=0",
            "--runs-dir", OUT, "--overwrite"], core)
    return OUT / name


def scaling(args) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cases = [(f"{n // 1_000_000}M" if n % 1_000_000 == 0 else str(n), n, False) for n in args.sizes]
    if args.stdlib:
        cases.append(("stdlib-top-level", None, True))
    results = {"machine": os.uname().nodename, "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
               "core": args.core, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = old_source(Path(tmp)) if args.old else None
        for label, n, top in cases:
            corpus = OUT / f"corpus-{label}.txt"
            chars = write_corpus(corpus, n, top)
            run = train_tiny(corpus, f"tiny-{label}", args.core)
            row = {"corpus": label, "characters": chars, "after": evaluate(run, args.core)}
            if label in args.old:
                row["before"] = evaluate(run, args.core, old)
                row["memorisation_identical"] = row["before"]["memorisation"] == row["after"]["memorisation"]
            print(json.dumps(row), flush=True)
            results["runs"].append(row)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    (Path("bench/out") / "text_eval_scaling.json").write_text(json.dumps(results, indent=2) + "\n")


def compare(args) -> None:
    run = Path(args.run)
    with tempfile.TemporaryDirectory() as tmp:
        before = evaluate(run, args.core, old_source(Path(tmp)))
    after = evaluate(run, args.core)
    print(json.dumps({"run": str(run), "before": before, "after": after,
                      "memorisation_identical": before["memorisation"] == after["memorisation"]}, indent=2))


def index(args) -> None:
    import importlib.util
    import random

    from genlab.metrics import text as new

    OUT.mkdir(parents=True, exist_ok=True)
    whole = OUT / "corpus-index.txt"
    write_corpus(whole, max(args.sizes) + 100_000)
    text = whole.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        spec = importlib.util.spec_from_file_location("old_text", old_source(Path(tmp)) / "genlab/metrics/text.py")
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    for n in args.sizes:
        corpus, rng = text[:n], random.Random(0)
        queries = [text[s: s + 2000] for s in (rng.randrange(n, len(text) - 2000) for _ in range(30))]
        queries += [corpus[s: s + 2000] for s in (rng.randrange(n - 2000) for _ in range(10))]
        queries += [q[:700] + "\x00" + q[900:] for q in queries[30:]]
        row, overlaps = {"characters": n, "queries": len(queries)}, {}
        for name, module in [("after", new), ("before", old)][: 2 if n in args.old else 1]:
            t0 = time.process_time()
            built = module.SubstringIndex(corpus)
            t1 = time.process_time()
            overlaps[name] = [built.longest_overlap(q) for q in queries]
            row[name] = {"build_cpu_seconds": round(t1 - t0, 2),
                         "queries_cpu_seconds": round(time.process_time() - t1, 2),
                         "median_overlap": sorted(overlaps[name])[len(queries) // 2]}
        if "before" in overlaps:
            row["identical"] = overlaps["before"] == overlaps["after"]
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scaling")
    s.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 4_000_000, 16_000_000])
    s.add_argument("--stdlib", action="store_true", help="also the top-level stdlib files (the issue's corpus)")
    s.add_argument("--old", nargs="*", default=[],
                   help="corpora also evaluated with the old index, by label (1M, 4M, 16M, stdlib-top-level)")
    c = sub.add_parser("compare")
    c.add_argument("run")
    for p in (s, c):
        p.add_argument("--core", type=int, default=1)
    i = sub.add_parser("index")
    i.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 4_000_000, 16_000_000])
    i.add_argument("--old", type=int, nargs="*", default=[], help="sizes also measured with the old index")
    args = ap.parse_args()
    {"scaling": scaling, "compare": compare, "index": index}[args.command](args)


if __name__ == "__main__":
    main()
