"""Images: uint8 N x C x H x W datasets (sklearn digits, IDX, .npz, folders), their audit and versions, FID-family
metrics on a domain classifier's or Inception's features, PNG/npz sample writers and the /images endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.options import option
from genlab.core.validate import choice, positive
from genlab.registry import names

IMAGE_METRICS = ("fid", "kid", "inception_score", "precision_recall", "density_coverage")


@dataclass
class ImageEval:
    n_samples: int = 1000  # generated samples for the memorisation check
    memorisation_reference: int = 2000  # test images that set the typical test-to-train distance
    seed: int = 0
    # classifier (domain CNN on the labels, offline, fast) | ssl (the same CNN trained without labels, for
    # unlabelled images; no IS or label agreement) | inception (FID Inception-v3)
    extractor: str = "classifier"
    image_metrics: list[str] = field(default_factory=lambda: list(IMAGE_METRICS))
    # generated images compared with the test split, the memorisation samples among them; FID is biased up
    # with fewer (KID is noisier), so compare runs at equal counts (each metric records its n_fake)
    metric_samples: int = 2000
    train_classifier: bool = True  # train the classifier / ssl encoder when none is cached for the dataset

    def validate(self) -> None:
        positive("eval", {"n_samples": self.n_samples, "memorisation_reference": self.memorisation_reference,
                          "metric_samples": self.metric_samples})
        choice("eval.extractor", self.extractor, tuple(names("extractor")))
        for name in self.image_metrics:
            choice("eval.image_metrics", name, IMAGE_METRICS)


@dataclass
class ImageSampling:
    label: int | None = option(None, "class to condition on (conditional models)", ge=0, le=1_000_000)


def image_dataset(data, purpose: str):
    """The image dataset of a DataConfig, for a command that only makes sense on images."""
    if data.source not in ImageModality.sources:
        raise GenlabError(f"{purpose} is for image datasets; this is {data.source} data")
    from genlab.modalities.image.data import load_image_dataset

    return load_image_dataset(data)


class ImageModality:
    name = "image"
    sources = ("digits", "idx", "npz", "folder")
    folder_contents = "IDX files, images"
    eval_options = ImageEval
    sample_options = ImageSampling
    output_suffixes = (".png", ".npz")
    model_noun = "an image model"  # what a run of this modality is, in messages
    endpoint = "images"

    @property
    def max_samples(self) -> int:
        from genlab.modalities.image.samples import MAX_SAMPLES

        return MAX_SAMPLES

    def check_data(self, data) -> None:
        if isinstance(data.path, list):
            raise GenlabError("data.path may list several files only for text sources (txt, jsonl, fortune)")

    def load(self, data, run_dir: Path | None = None):
        from genlab.modalities.image.data import load_image_dataset

        return load_image_dataset(data)

    def infer(self, target: str) -> dict | None:
        from genlab.modalities.image.data import IMAGE_SUFFIXES

        path = Path(target).expanduser()
        if path.is_dir():
            if any(path.glob("train-images-idx3-ubyte*")):
                return {"source": "idx", "path": str(path)}
            if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file()):
                return {"source": "folder", "path": str(path)}
        elif path.is_file() and path.suffix.lower() == ".npz":
            return {"source": "npz", "path": str(path)}
        return None

    def audit(self, data, out: Path, eval_options: Any, quiet: bool = True) -> dict:
        from genlab.core.items import names_of
        from genlab.modalities.image.audit import audit_images, finding_ids, write_audit
        from genlab.modalities.image.data import load_image_dataset

        unreadable: list[dict] = []
        ds = load_image_dataset(data, unreadable)
        report = {"dataset": ds.describe()["fingerprint"], **audit_images(ds.images, ds.labels, ds.class_names),
                  "unreadable": {"count": len(unreadable), "items": unreadable[:50]}}
        report["names"] = names_of(finding_ids(report), ds.item_names)
        write_audit(report, out, ds.images)
        summary = {"items": report["items"], "unreadable files": len(unreadable),
                   "exact duplicate copies": report["exact_duplicates"]["extra_copies"],
                   "near-duplicate pairs": report["near_duplicates"]["pairs"], "outliers": report["outliers"]["count"]}
        if "label_issues" in report:
            summary["likely label errors"] = report["label_issues"]["count"]
            summary["class imbalance (max/min)"] = round(report["classes"]["imbalance_ratio"], 2)
        return summary

    def clean(self, data, operations: list[str], out: Path, drop_ids: Path | None = None) -> dict:
        from genlab.modalities.image.versions import clean_version

        return clean_version(data, operations, out, drop_ids)

    def generate(self, run, n: int, seed: int, options: ImageSampling, family_options: Any):
        from genlab.modalities.image.samples import generate_images

        return generate_images(run.model, n, options.label, seed, family_options)

    def print_samples(self, run, n: int, seed: int, options: Any, family_options: Any, echo) -> None:
        raise GenlabError("--out FILE.png or FILE.npz is required for images")

    def write_samples(self, run, samples, out: Path, options: ImageSampling) -> None:
        from genlab.modalities.image.samples import save_samples

        save_samples(samples, out)

    def evaluate(self, run, options: Any, quiet: bool = True) -> dict:
        from genlab.modalities.image.evaluate import evaluate_image_run

        return evaluate_image_run(run, options, quiet)

    def headline(self, metrics: dict) -> dict:
        out = dict(metrics.get("family_metrics", {}).get("headline", {}))  # the family's own figures (family_metrics)
        for name, value in metrics.get("image", {}).items():
            if isinstance(value, dict):
                shown = {k: round(v, 4) for k, v in value.items()
                         if isinstance(v, float) and k not in ("seconds", "classifier_test_accuracy")}
                out[f"{name} ({metrics['image']['extractor']})"] = value.get("error") or shown
        if "memorisation" in metrics:
            out["memorisation"] = metrics["memorisation"]["verdict"]
            out["sample/test nearest-train distance ratio"] = round(metrics["memorisation"]["median_ratio"], 3)
        return out

    def add_routes(self, app, server) -> None:
        from genlab.modalities.image.routes import add_edit_routes, add_image_routes

        add_image_routes(app, server, self)
        add_edit_routes(app, server, self)
