"""How much does data quality move the generator? Controlled damage to a clean dataset (label noise,
duplicates, less data), the same recipe trained on each version, every arm scored against the parent's test
split with the parent's feature extractor; clean-then-train arms show how much `genlab data clean` recovers.

Each arm is a dataset version (OUT/data/ARM) and an ordinary genlab run (OUT/runs/ARM); an interrupted study
resumes the half-trained run and skips the finished arms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.config import RunConfig
from genlab.core.errors import GenlabError
from genlab.core.runs import RunPaths, read_json
from genlab.modalities.image import image_dataset
from genlab.modalities.image.data import ImageDataset, load_image_dataset
from genlab.modalities.image.evaluate import compute_image_metrics, extractor_for, label_agreement
from genlab.modalities.image.versions import clean_version, degraded_version, version_config
from genlab.pipeline import generate, open_run, train_config
from genlab.studies.common import Study, write_table

NEUTRAL = {"label_noise": 0.0, "duplicates": 0.0, "subsample": 1.0}  # the undamaged value of each factor


@dataclass(frozen=True)
class Arm:
    name: str
    label_noise: float = 0.0
    duplicates: float = 0.0
    subsample: float = 1.0
    clean: tuple[str, ...] = ()  # audit fixes applied after the damage

    @property
    def damaged(self) -> Arm:
        """The same damage without cleaning (the version a clean arm starts from)."""
        return dataclasses.replace(self, name=self.name.removesuffix("+clean"), clean=())


def study_arms(label_noise=(0.0, 0.1, 0.3), duplicates=(0.0, 0.5), subsample=(1.0, 0.3, 0.1),
               clean: bool = True) -> list[Arm]:
    """One factor at a time from the clean base; with `clean`, the worst label noise and the worst duplication
    again after `genlab data clean` (labels, resp. exact + near duplicates)."""
    arms = [Arm("base")]
    arms += [Arm(f"labels-{p:g}", label_noise=p) for p in label_noise if p > 0]
    arms += [Arm(f"duplicates-{p:g}", duplicates=p) for p in duplicates if p > 0]
    arms += [Arm(f"subsample-{p:g}", subsample=p) for p in subsample if p < 1]
    if clean and max(label_noise, default=0) > 0:
        arms.append(Arm(f"labels-{max(label_noise):g}+clean", label_noise=max(label_noise), clean=("labels",)))
    if clean and max(duplicates, default=0) > 0:
        arms.append(Arm(f"duplicates-{max(duplicates):g}+clean", duplicates=max(duplicates), clean=("exact", "near")))
    return arms


def arm_version(arm: Arm, parent: ImageDataset, out: Path, seed: int) -> Path:
    """The arm's dataset version folder, written once (a finished version is reused as it is)."""
    folder = out / "data" / arm.name
    if folder.is_dir():
        return folder
    if arm.clean:
        damaged = arm_version(arm.damaged, parent, out, seed)
        clean_version(load_image_dataset(version_config(damaged)), list(arm.clean), folder)
    else:
        degraded_version(parent, folder, arm.label_noise, arm.duplicates, arm.subsample, seed)
    return folder


def score_run(run_root: Path, base: ImageDataset, extractor, n_samples: int, seed: int, quiet: bool) -> dict:
    """FID / precision / recall against the base test split; label agreement for conditional models."""
    run = open_run(run_root)
    if run.model.conditional:
        per_class = max(1, n_samples // base.num_classes)
        labels = torch.arange(base.num_classes).repeat_interleave(per_class)
        samples = torch.cat([generate(run, per_class, label=c, seed=seed + c) for c in range(base.num_classes)])
    else:
        labels, samples = None, generate(run, n_samples, seed=seed)
    image = compute_image_metrics(base, samples, extractor, ["fid", "precision_recall"], quiet=quiet)
    scores = {"fid": image["fid"].get("value"), "precision": image["precision_recall"].get("precision"),
              "recall": image["precision_recall"].get("recall"), "n_samples": int(samples.shape[0])}
    if labels is not None:
        scores["label_agreement"] = label_agreement(base, samples, labels, extractor, quiet=quiet)["accuracy"]
    return scores


def data_quality_study(cfg: RunConfig, out: str | Path, arms: list[Arm], seed: int = 0, n_samples: int = 2000,
                       quiet: bool = False) -> list[dict]:
    out = Path(out)
    base = image_dataset(cfg.data, "genlab study data-quality")
    if base.labels is None and any(a.label_noise or "labels" in a.clean for a in arms):
        raise GenlabError("label-noise arms need a labelled dataset; pass --label-noise 0")
    if len({a.name for a in arms}) != len(arms):
        raise GenlabError("study arms need distinct names")
    extractor = extractor_for(base, cfg.eval.extractor, True, quiet)  # one yardstick for every arm
    study = Study(out, len(arms))
    results = []
    for arm in arms:
        def compute(arm=arm) -> dict:
            version = arm_version(arm, base, out, seed)
            arm_cfg = dataclasses.replace(cfg, name=arm.name, data=dataclasses.replace(
                cfg.data, source="npz", path=str((version / "data.npz").resolve()), limit=None))
            run = RunPaths(out / "runs" / arm.name)
            if not run.summary.is_file():
                train_config(arm_cfg, out / "runs", resume=run.root.is_dir() and any(run.root.iterdir()))
            manifest = read_json(version / "manifest.json")
            return {"label_noise": arm.label_noise, "duplicates": arm.duplicates, "subsample": arm.subsample,
                    "clean": list(arm.clean), "train_items": manifest["splits"]["train"],
                    "removed_by_clean": {o["op"]: o["count"] for o in manifest["operations"]} if arm.clean else {},
                    "fingerprint": manifest["fingerprint"], "train": read_json(run.summary),
                    **score_run(run.root, base, extractor, n_samples, seed, quiet)}
        results.append(study.arm(arm.name, compute))
    write_data_quality_report(out, cfg, results)
    return results


def write_data_quality_report(out: Path, cfg: RunConfig, results: list[dict]) -> None:
    from matplotlib.figure import Figure

    metrics = [m for m in ("fid", "label_agreement") if any(r.get(m) is not None for r in results)]
    factors = {"label_noise": "label noise (fraction of training labels changed)",
               "duplicates": "duplicated fraction of the training set",
               "subsample": "fraction of the training set kept"}
    # one y scale per metric across the three factors, so small differences do not look large
    fig = Figure(figsize=(13, 3.6 * len(metrics)))
    axes = fig.subplots(len(metrics), 3, squeeze=False, sharey="row")
    for row, metric in enumerate(metrics):
        for col, (factor, label) in enumerate(factors.items()):
            ax = axes[row][col]
            only = [r for r in results if all(r[f] == NEUTRAL[f] for f in factors if f != factor)]
            damaged = sorted((r for r in only if not r["clean"]), key=lambda r: r[factor])
            ax.plot([r[factor] for r in damaged], [r[metric] for r in damaged], "o-", label="damaged")
            cleaned = [r for r in only if r["clean"]]
            if cleaned:
                ax.plot([r[factor] for r in cleaned], [r[metric] for r in cleaned], "*", markersize=14,
                        label="damaged, then genlab data clean")
                ax.legend(fontsize=8)
            ax.set_xlabel(label, fontsize=9)
            ax.set_ylabel({"fid": "FID (lower is better)", "label_agreement": "label agreement"}[metric])
            ax.grid(alpha=0.3)
    fig.suptitle(f"Data quality vs {cfg.family} samples ({cfg.name}); scored on the clean test split")
    fig.tight_layout()
    fig.savefig(out / "data_quality.png", dpi=110)
    rows = [[r["arm"], r["train_items"], r["fid"], r["precision"], r["recall"], r.get("label_agreement", "-"),
             r["train"]["steps"], r["train"]["train_seconds"],
             ", ".join(f"{k} -{v}" for k, v in r["removed_by_clean"].items()) or "-"] for r in results]
    write_table(out, "genlab study data-quality",
                f"Recipe {cfg.name} ({cfg.family}); each arm trains the same recipe on a damaged (and maybe "
                "cleaned) version of the training split; every arm is scored against the same clean test split "
                "with the same feature extractor.",
                ["arm", "train items", "FID", "precision", "recall", "label agreement", "steps", "train s",
                 "removed by clean"], rows, "data_quality.png")
