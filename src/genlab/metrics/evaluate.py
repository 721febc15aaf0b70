"""`genlab eval`: every metric that applies to a run, written to metrics.json."""

from __future__ import annotations

import time

import torch

from genlab.data.images import images_to_unit
from genlab.errors import GenlabError
from genlab.metrics.image_eval import compute_image_metrics, extractor_for, label_agreement
from genlab.metrics.memorisation import memorisation_report
from genlab.pipeline import LoadedRun, generate, save_samples
from genlab.runs import atomic_write_json


def evaluate_run(run: LoadedRun, quiet: bool = True) -> dict:
    cfg, ds, model = run.config, run.dataset, run.model
    ec = cfg.eval
    metrics: dict = {"family": cfg.family, "dataset_fingerprint": ds.fingerprint, "timings_seconds": {}}
    if model.supports_likelihood:
        t0 = time.perf_counter()
        metrics["likelihood"] = model.test_likelihood(ds, ec, cfg.data.binarize, quiet)
        metrics["timings_seconds"]["likelihood"] = round(time.perf_counter() - t0, 3)
    if ds.modality == "text":
        return _finish_text(run, metrics)

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


TEXT_SAMPLES, TEXT_SAMPLE_TOKENS = 20, 200


def _finish_text(run: LoadedRun, metrics: dict) -> dict:
    """Language models: likelihood, then 20 unprompted samples of up to 200 tokens: their longest verbatim
    overlap with the training text (beside held-out documents') and distinct-1/2; samples kept in the run."""
    from genlab.metrics.text import distinct_n, memorisation_report
    from genlab.pipeline import generate_text

    t0 = time.perf_counter()
    ds = run.dataset
    texts = generate_text(run, "", n=TEXT_SAMPLES, seed=run.config.eval.seed, max_new_tokens=TEXT_SAMPLE_TOKENS)
    run.paths.samples.mkdir(exist_ok=True)
    (run.paths.samples / "samples.txt").write_text("\n%\n".join(texts) + "\n", encoding="utf-8")
    held_out = ds.corpus.split_documents("test") or ds.corpus.split_documents("val")
    train_text = "\n".join(ds.corpus.split_documents("train"))
    metrics["memorisation"] = memorisation_report(texts, train_text, held_out[:TEXT_SAMPLES])
    metrics["diversity"] = {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                            "n_samples": len(texts)}
    metrics["timings_seconds"]["samples"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(run.paths.metrics, metrics)
    return metrics
