"""`genlab eval`: every metric that applies to a run, written to metrics.json."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

import torch
from tqdm import tqdm

from genlab.data.images import images_to_unit
from genlab.errors import GenlabError
from genlab.metrics.image_eval import compute_image_metrics, extractor_for, label_agreement
from genlab.metrics.memorisation import memorisation_report
from genlab.pipeline import LoadedRun, generate, sample_rows, save_samples
from genlab.runs import atomic_write_json


def evaluate_run(run: LoadedRun, quiet: bool = True) -> dict:
    cfg, ds, model = run.config, run.dataset, run.model
    ec = cfg.eval
    metrics: dict = {"family": cfg.family, "dataset_fingerprint": ds.fingerprint, "timings_seconds": {}}
    if model.supports_likelihood:
        with _phase(metrics, "likelihood", quiet):
            metrics["likelihood"] = model.test_likelihood(ds, ec, cfg.data.binarize, quiet)
    if ds.modality == "text":
        return _finish_text(run, metrics, quiet)
    if ds.modality == "table":
        return _finish_table(run, metrics)

    t0 = time.perf_counter()
    samples = generate(run, ec.n_samples, seed=ec.seed)
    train = images_to_unit(ds.split_images("train"))
    test = images_to_unit(ds.split_images("test")[: ec.memorisation_reference])
    memo = memorisation_report(samples, train, test)
    metrics["memorisation"] = memo
    metrics["timings_seconds"]["memorisation"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    try:  # resolved once, shared by the image metrics and label agreement
        extractor = extractor_for(ds, ec.extractor, ec.train_classifier, quiet)
    except GenlabError:
        extractor = ec.extractor  # each metric then reports the error itself
    n_metric = ec.metric_samples
    metric_samples = samples if n_metric <= samples.shape[0] else generate(run, n_metric, seed=ec.seed + 1)
    metrics["image"] = compute_image_metrics(ds, metric_samples[:n_metric], extractor, ec.image_metrics,
                                             ec.train_classifier, quiet)
    metrics["timings_seconds"]["image_metrics"] = round(time.perf_counter() - t0, 3)

    run.paths.samples.mkdir(exist_ok=True)
    save_samples(samples[:64], run.paths.samples / "grid.png")
    closest = samples[memo["closest_samples"]]
    neighbours = train[memo["closest_train_indices"]]
    save_samples(torch.cat([closest, neighbours]), run.paths.samples / "closest_to_train.png", ncol=len(closest))
    if model.conditional:
        per_class = max(1, ec.n_samples // ds.num_classes)
        rows = [generate(run, per_class, label=c, seed=ec.seed + c) for c in range(ds.num_classes)]
        labels = torch.arange(ds.num_classes).repeat_interleave(per_class)
        metrics["image"]["label_agreement"] = label_agreement(ds, torch.cat(rows), labels, extractor,
                                                              ec.train_classifier, quiet)
        shown = min(10, per_class)
        save_samples(torch.cat([r[:shown] for r in rows]), run.paths.samples / "by_class.png", ncol=shown)
    atomic_write_json(run.paths.metrics, metrics)
    return metrics


def _finish_table(run: LoadedRun, metrics: dict) -> dict:
    """As many synthetic rows as training rows, judged against the real rows: fidelity (per column, per pair,
    classifier two-sample AUC) against the test split, utility for eval.target (TSTR vs TRTR), privacy (DCR,
    NNDR, membership inference) with the test split as the unseen holdout. Writes table_report.html."""
    from genlab.metrics import tables
    from genlab.report.html import write_table_report

    ds, ec = run.dataset, run.config.eval
    t0 = time.perf_counter()
    train, test = ds.split_frame("train"), ds.split_frame("test")
    fake = sample_rows(run, max(1, len(train)), ec.seed)
    metrics["constraints"] = {"rules": ds.constraints, **fake.attrs["constraints"]}
    metrics["timings_seconds"]["sampling"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    x_train, x_test, x_fake = tables.features([train, test, fake], ds.schema)
    metrics["fidelity"] = {"reference": f"test split ({len(test)} rows) vs {len(fake)} synthetic rows",
                           **tables.column_fidelity(test, fake, ds.schema),
                           **tables.pairwise_fidelity(test, fake, ds.schema),
                           "classifier_two_sample_auc": tables.classifier_two_sample_auc(x_test, x_fake, ec.seed)}
    metrics["timings_seconds"]["fidelity"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    metrics["utility"] = (tables.utility(train, fake, test, ds.schema, ec.target, ec.seed) if ec.target
                          else {"skipped": "set eval.target to the column a downstream model predicts"})
    metrics["timings_seconds"]["utility"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    metrics["privacy"] = tables.privacy(x_train, x_test, x_fake)
    metrics["timings_seconds"]["privacy"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(run.paths.metrics, metrics)
    write_table_report(run.paths, metrics)
    return metrics


@contextmanager
def _phase(metrics: dict, name: str, quiet: bool):
    """Times one step of an evaluation into metrics["timings_seconds"][name] and, unless quiet, says on stderr
    how long it took: a line per step, which a log keeps where progress bars are off."""
    t0 = time.perf_counter()
    yield
    seconds = metrics["timings_seconds"][name] = round(time.perf_counter() - t0, 3)
    if not quiet:
        print(f"eval {name}: {seconds:.1f} s", file=sys.stderr, flush=True)


TEXT_SAMPLES, TEXT_SAMPLE_TOKENS = 20, 200


def _finish_text(run: LoadedRun, metrics: dict, quiet: bool = True) -> dict:
    """Language models: likelihood, then 20 unprompted samples of up to 200 tokens: their longest verbatim
    overlap with the training text (beside held-out documents'), distinct-1/2 and self-BLEU; and greedy
    continuations of the first half of up to 20 held-out documents scored against the true second half
    (BLEU, ROUGE-L). Samples are kept in the run. Progress bars where stderr is a terminal, unless quiet."""
    from genlab.metrics.text import distinct_n, memorisation_report, reference_scores, self_bleu
    from genlab.pipeline import generate_text, stream_text

    ds, seed = run.dataset, run.config.eval.seed
    no_bars = quiet or not sys.stderr.isatty()
    with _phase(metrics, "sampling", quiet):
        texts = [""] * TEXT_SAMPLES  # generate_text's loop, with a bar over the tokens
        steps = stream_text(run, "", seed, TEXT_SAMPLES, max_new_tokens=TEXT_SAMPLE_TOKENS)
        for pieces in tqdm(steps, total=TEXT_SAMPLE_TOKENS, disable=no_bars, desc=f"sampling {TEXT_SAMPLES} texts",
                           unit="token"):
            texts = [a + b for a, b in zip(texts, pieces, strict=True)]
        run.paths.samples.mkdir(exist_ok=True)
        (run.paths.samples / "samples.txt").write_text("\n%\n".join(texts) + "\n", encoding="utf-8")
    held_out = ds.corpus.split_documents("test") or ds.corpus.split_documents("val")
    with _phase(metrics, "memorisation", quiet):
        train_text = "\n".join(ds.corpus.split_documents("train"))
        metrics["memorisation"] = memorisation_report(texts, train_text, held_out[:TEXT_SAMPLES], quiet=no_bars)
    with _phase(metrics, "diversity", quiet):
        metrics["diversity"] = {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                                "self_bleu": self_bleu(texts), "n_samples": len(texts)}
    with _phase(metrics, "continuations", quiet):
        docs = [d for d in held_out if len(d) >= 8][:TEXT_SAMPLES]
        if len(docs) == 1:  # one long held-out text (Tiny Shakespeare): score 20 passages of it instead
            docs = [docs[0][i: i + 400] for i in range(0, min(len(docs[0]), 400 * TEXT_SAMPLES), 400)]
        prompts = [d[: len(d) // 2] for d in docs]
        truths = [d[len(d) // 2:] for d in docs]
        continuations = [generate_text(run, p, 1, seed=0, temperature=0.0,
                                       max_new_tokens=max(1, len(ds.tokenizer.encode(t))))[0]
                         for p, t in tqdm(list(zip(prompts, truths, strict=True)), disable=no_bars,
                                          desc="greedy continuations", unit="document")]
        metrics["continuations"] = {**reference_scores(continuations, truths), "decoding": "greedy",
                                    "prompt": "first half of each held-out document"}
    metrics["timings_seconds"]["samples"] = round(sum(metrics["timings_seconds"][k] for k in (
        "sampling", "memorisation", "diversity", "continuations")), 3)  # all of the above, as before
    atomic_write_json(run.paths.metrics, metrics)
    return metrics
