"""Benchmark: chat fine-tuning on the Debian FAQ (issue 15). Not a test; one torch thread, pin it to one core.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/chat.py [--seeds 0 1 2] [--fortunes /usr/share/games/fortunes]

(a) answers only vs every token: configs/debian-faq-chat-gpt.yaml from scratch with data.train_on=assistant and
    =all, one run per seed (train.seed; the split by question is the same), each scored by `genlab eval` on the
    12 held-out questions: perplexity of the answers' tokens, greedy answers' token-F1 / ROUGE-L / exact match.
(b) pretrained then chat-tuned vs chat data alone: a GPT of the same shape pretrained on eight English fortune
    files (Debian's `fortunes`: apt-get download fortunes && dpkg -x; seed 0), fine-tuned on the FAQ with
    configs/debian-faq-chat-finetune.yaml, LoRA and --full, one run per seed, scored the same way.
(c) packing vs padding: trained (answer) tokens per second of the FAQ and chatterbot recipes' models, forward +
    backward + AdamW step on batches of the training stream, median of 30 steps after 5 warm-up steps, per seed.
(d) the audit of both shipped corpora (duplicates, near-duplicates, contamination of held-out questions).
(e) grounded vs ungrounded: an index of the 123 FAQ answers (genlab.retrieval, default settings, id = the FAQ
    section), the FAQ recipe at block 384 trained with data.retrieval.index (k=1: the passage retrieved for the
    question sits in the prompt) and without, one run per seed; token-F1, support share (answer word trigrams
    found in the passage retrieved for the question: the same retrieval scores the ungrounded answers) and
    citation precision (the cited passage is from the question's own FAQ section).

Writes bench/out/chat.json and prints a markdown summary (means and spread over seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlab.config import load_config  # noqa: E402
from genlab.modalities import load_dataset  # noqa: E402
from genlab.pipeline import evaluate_run, finetune, load_target, open_run, train  # noqa: E402
from genlab.registry import modality  # noqa: E402
from genlab.train.trainer import build_model, data_spec  # noqa: E402

FAQ = ROOT / "configs" / "debian-faq-chat-gpt.yaml"
TUNE = ROOT / "configs" / "debian-faq-chat-finetune.yaml"
CHATTERBOT = ROOT / "configs" / "chatterbot-chat-gpt.yaml"
FORTUNE_FILES = ["cookie", "computers", "definitions", "people", "science", "politics", "work", "wisdom"]
CORPORA = {"debian-faq": ROOT / "data/chat/debian-faq.jsonl", "chatterbot-en": ROOT / "data/chat/chatterbot-en.jsonl"}


def scores(run_dir: Path) -> dict:
    """The figures compared: held-out answer perplexity and the greedy answers' scores."""
    metrics = evaluate_run(open_run(run_dir), quiet=True)
    answers = metrics["answers"]
    return {"answer_perplexity": metrics["likelihood"]["perplexity"], "token_f1": answers["token_f1"],
            "rouge_l": answers["rouge_l_f1"], "exact_match": answers["exact_match"],
            "train_seconds": json.loads((run_dir / "train_summary.json").read_text())["train_seconds"]}


def spread(rows: list[dict]) -> dict:
    """Mean, standard deviation and the runs of each figure (None where a figure does not apply)."""
    out = {}
    for k in rows[0]:
        values = [r[k] for r in rows if r[k] is not None and r[k] == r[k]]  # NaN: does not apply
        out[k] = {"mean": statistics.fmean(values) if values else None,
                  "sd": statistics.stdev(values) if len(values) > 1 else None, "runs": [r[k] for r in rows]}
    return out


def answers_only_vs_all(seeds, runs: Path) -> dict:
    out = {}
    for train_on in ("assistant", "all"):
        rows = []
        for seed in seeds:
            name = f"faq-{train_on}-s{seed}"
            train(FAQ, [f"name={name}", f"train.seed={seed}", f"data.train_on={train_on}",
                        f"data.path={CORPORA['debian-faq']}", "train.threads=1"], runs, overwrite=True)
            rows.append(scores(runs / name))
            print(name, rows[-1], flush=True)
        out[train_on] = spread(rows)
    return out


def pretrained_vs_alone(seeds, runs: Path, fortunes: Path, base_steps: int) -> dict:
    paths = [str(fortunes / f) for f in FORTUNE_FILES]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"missing {missing[0]}: apt-get download fortunes && dpkg -x fortunes_*.deb DIR, then "
                         "--fortunes DIR/usr/share/games/fortunes")
    faq = load_config(FAQ)
    base_overrides = ["name=fortunes-base", "family=gpt", "data.source=fortune", f"data.path={json.dumps(paths)}",
                      "data.tokenizer=bpe", f"data.vocab_size={faq.data.vocab_size}",
                      f"data.block_size={faq.data.block_size}", f"train.steps={base_steps}", "train.val_every=200",
                      "train.val_batches=8", "train.threads=1"]
    start = time.perf_counter()
    train(None, [*base_overrides, *[f"model.{k}={v}" for k, v in vars(faq.model).items()],
                 *[f"train.{k}={json.dumps(getattr(faq.train, k))}" for k in
                   ("batch_size", "optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "min_lr_ratio",
                    "grad_clip")]], runs, overwrite=True)
    out = {"base_seconds": round(time.perf_counter() - start, 1), "base_steps": base_steps}
    for kind, full in (("lora", False), ("full", True)):
        rows = []
        for seed in seeds:
            name = f"faq-{kind}-s{seed}"
            finetune(runs / "fortunes-base", TUNE, [f"name={name}", f"train.seed={seed}", "train.threads=1",
                                                    f"data.path={CORPORA['debian-faq']}"], runs, overwrite=True,
                     full=full)
            rows.append(scores(runs / name))
            print(name, rows[-1], flush=True)
        out[kind] = spread(rows)
    return out


def packing_throughput(seeds, steps: int = 30, warmup: int = 5) -> dict:
    return {name: packing_on(recipe, CORPORA[name], seeds, steps, warmup)
            for name, recipe in (("debian-faq", FAQ), ("chatterbot-en", CHATTERBOT))}


def packing_on(recipe: Path, data: Path, seeds, steps: int, warmup: int) -> dict:
    out = {}
    for packing in (True, False):
        rows = []
        for seed in seeds:
            cfg = load_config(recipe, [f"data.packing={packing}", f"data.path={data}", f"train.seed={seed}"])
            ds = load_dataset(cfg.data)
            torch.manual_seed(seed)
            model = build_model(cfg, data_spec(ds))
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
            stream = ds.train_stream(cfg.train.batch_size, seed)
            times, trained, positions = [], 0, 0
            for i in range(warmup + steps):
                batch = stream.next()
                t = time.perf_counter()
                loss, _ = model.phase_loss("lm", batch, None)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i >= warmup:
                    times.append(time.perf_counter() - t)
                    trained += int(batch.mask.sum())
                    positions += batch.mask.numel()
            per_step = statistics.median(times)
            rows.append({"trained_tokens_per_s": trained / steps / per_step, "seconds_per_step": per_step,
                         "trained_share_of_positions": trained / positions})
            print(recipe.stem, "packing" if packing else "padding", seed, rows[-1], flush=True)
        out["packed" if packing else "padded"] = spread(rows)
    return out


def grounded_vs_not(seeds, runs: Path, folder: Path) -> dict:
    from genlab.metrics.answers import support_share
    from genlab.retrieval import Document, Index

    records = [json.loads(line) for line in CORPORA["debian-faq"].read_text().splitlines()]
    index = Index.build([Document(r["source"], r["messages"][1]["content"], r["source"]) for r in records])
    index.save(folder / "faq-index")
    out = {"index": index.info}
    for arm in ("ungrounded", "grounded"):
        rows = []
        for seed in seeds:
            name = f"faq-{arm}-s{seed}"
            extra = [f"data.retrieval.index={folder / 'faq-index'}", "data.retrieval.k=1"] if arm == "grounded" else []
            train(FAQ, [f"name={name}", f"train.seed={seed}", f"data.path={CORPORA['debian-faq']}", "train.threads=1",
                        "data.block_size=384", *extra], runs, overwrite=True)
            row = scores(runs / name)
            metrics = json.loads((runs / name / "metrics.json").read_text())
            saved = (runs / name / "samples" / "answers.jsonl").read_text().splitlines()
            support = [s for a in map(json.loads, saved) if (s := support_share(a["answer"], [
                h.text[:600] for h in index.search(a["messages"][-1]["content"], 1)])) is not None]
            row["support_share"] = sum(support) / len(support) if support else float("nan")
            row["citation_precision"] = (metrics.get("grounding") or {}).get("citation_precision") or float("nan")
            rows.append(row)
            print(name, row, flush=True)
        out[arm] = spread(rows)
    return out


def audits(folder: Path) -> dict:
    out = {}
    for name, path in CORPORA.items():
        cfg = load_target(str(path), ["family=gpt"])  # as `genlab data audit FILE` reads it
        out[name] = modality("chat").audit(cfg.data, folder / name, cfg.eval, quiet=True)
        print(name, out[name], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fortunes", type=Path, default=Path("/usr/share/games/fortunes"))
    parser.add_argument("--base-steps", type=int, default=600)
    parser.add_argument("--only", nargs="+", default=["d", "c", "a", "b", "e"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = ROOT / "bench" / "out" / "chat.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.update(seeds=args.seeds, torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        parts = {"d": ("audit", lambda: audits(Path(tmp) / "audit")),
                 "c": ("packing", lambda: packing_throughput(args.seeds)),
                 "a": ("train_on", lambda: answers_only_vs_all(args.seeds, runs)),
                 "b": ("pretrained", lambda: pretrained_vs_alone(args.seeds, runs, args.fortunes, args.base_steps)),
                 "e": ("grounding", lambda: grounded_vs_not(args.seeds, runs, Path(tmp)))}
        for part in args.only:
            key, measure = parts[part]
            result[key] = measure()
            out.write_text(json.dumps(result, indent=1))  # each part as soon as it is measured
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
