"""Audit an image dataset before training on it: exact duplicates (content hash), near duplicates (difference
hash within a Hamming distance, pixel-space neighbours), outliers (kNN density), likely label errors (confident
learning on out-of-fold probabilities), class balance and pixel statistics. Every finding lists item ids (row
numbers in the dataset) so they can be looked at.
"""

from __future__ import annotations

import hashlib
import html
import warnings
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.core.versions import removal_plan


def exact_duplicates(images: torch.Tensor) -> list[list[int]]:
    """Groups of ids whose pixels are byte-for-byte identical (first id = the one kept by a clean)."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    arr = images.contiguous().numpy()
    for i in range(arr.shape[0]):
        groups[hashlib.sha256(arr[i].tobytes()).digest()].append(i)
    return [g for g in groups.values() if len(g) > 1]


def difference_hash(images: torch.Tensor, size: int = 8) -> np.ndarray:
    """64-bit dHash per image (Krawetz): grey, area-resized to (size) x (size + 1), one bit per horizontal
    brightness step. Small noise, blur or contrast changes move few bits; different images differ in ~half."""
    grey = images.float().mean(dim=1, keepdim=True)
    small = F.adaptive_avg_pool2d(grey, (size, size + 1))[:, 0]
    bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(images.shape[0], -1).numpy().astype(np.uint64)
    return (bits << np.arange(bits.shape[1], dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def _copy_of(images: torch.Tensor, exact: list[list[int]] | None) -> dict[int, int]:
    """id -> the first id of its exact-duplicate group (ids without copies are absent)."""
    return {i: g[0] for g in (exact_duplicates(images) if exact is None else exact) for i in g}


def near_duplicates(images: torch.Tensor, max_distance: int = 4,
                    exact: list[list[int]] | None = None) -> list[tuple[int, int, int]]:
    """Pairs (i, j, Hamming distance) with dHash distance <= max_distance, not counting exact copies.
    Candidates come from banding (the 64 bits cut into max_distance + 1 bands: two hashes within the distance
    agree on at least one whole band), so the search is near linear, and it finds every such pair. `exact`:
    the groups exact_duplicates found, when already known."""
    hashes = difference_hash(images)
    bands = max_distance + 1
    width = 64 // bands
    copy_of = _copy_of(images, exact)
    pairs: dict[tuple[int, int], int] = {}
    for b in range(bands):
        shift, mask = np.uint64(b * width), np.uint64((1 << width) - 1)
        keys = (hashes >> shift) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2 or e - s > 2000:  # a huge bucket is a flat image class, not duplicates
                continue
            members = np.sort(order[s:e])
            xor = hashes[members][:, None] ^ hashes[members][None, :]
            dist = np.unpackbits(xor.view(np.uint8), axis=-1).reshape(len(members), len(members), -1).sum(-1)
            for a, c in zip(*np.nonzero(np.triu(dist <= max_distance, k=1)), strict=True):
                i, j = int(members[a]), int(members[c])
                if copy_of.get(i, i) != copy_of.get(j, j):
                    pairs[(i, j)] = int(dist[a, c])
    return [(i, j, d) for (i, j), d in sorted(pairs.items())]


def pixel_neighbours(images: torch.Tensor, neighbours: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Distances and ids of each item's nearest neighbours (itself excluded) in pixel space, PCA to 64
    dimensions for larger images: the feature space both near duplicates and outliers are judged in."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    n = images.shape[0]
    x = images.reshape(n, -1).float().numpy() / 255.0
    if min(n, x.shape[1]) > 64:  # n <= 64 points already lie in n - 1 dimensions: PCA would keep every distance
        x = PCA(64, random_state=0).fit_transform(x)
    dist, idx = NearestNeighbors(n_neighbors=min(neighbours + 1, n)).fit(x).kneighbors(x)
    return dist[:, 1:], idx[:, 1:]  # a one-item dataset: no neighbours, n x 0


def feature_near_duplicates(images: torch.Tensor, ratio: float = 0.25, exact: list[list[int]] | None = None,
                            neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> list[tuple]:
    """Pairs (i, j, distance) closer in pixel space (PCA to 64 dimensions for larger images) than `ratio` times
    the dataset's median nearest-neighbour distance, not counting exact copies. Catches noisy or re-encoded
    copies that a hash of a tiny image cannot."""
    nearest, others = neighbours if neighbours is not None else pixel_neighbours(images)
    copy_of = _copy_of(images, exact)
    apart = nearest > 1e-6  # exact copies are the other finding
    typical = float(np.median(nearest[apart])) if apart.any() else 0.0
    pairs = {}
    for i, j in zip(*np.nonzero(apart & (nearest <= ratio * typical)), strict=True):
        a, b = sorted((int(i), int(others[i, j])))
        if a != b and copy_of.get(a, a) != copy_of.get(b, b):
            pairs[(a, b)] = round(float(nearest[i, j]), 4)
    return [(a, b, d) for (a, b), d in sorted(pairs.items())]


def density_outliers(nearest: np.ndarray, fence: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Items in empty regions: score = mean distance to the k nearest neighbours (a kNN density estimate's
    inverse); outliers lie above Q3 + fence x IQR of the scores. Returns (ids most isolated first, scores)."""
    if nearest.shape[1] == 0:  # a single item has no neighbours to be far from
        return np.zeros(0, dtype=np.int64), np.zeros(nearest.shape[0])
    score = nearest.mean(axis=1)
    q1, q3 = np.percentile(score, [25, 75])
    ids = np.flatnonzero(score > q3 + fence * (q3 - q1))
    return ids[np.argsort(-score[ids])], score


def out_of_fold_probabilities(images: torch.Tensor, labels: torch.Tensor, folds: int = 5, seed: int = 0):
    """P(class | image) for every item from a model that never saw it: multinomial logistic regression on
    the pixels (scaled to [0, 1]), k-fold cross-fitted (scikit-learn); fewer folds when the smallest class
    has fewer than `folds` items. One column per class index (0 for a class with no items)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = images.reshape(images.shape[0], -1).float().numpy() / 255.0
    y = labels.numpy()
    present, counts = np.unique(y, return_counts=True)
    model = LogisticRegression(max_iter=300, C=0.5)
    splitter = StratifiedKFold(min(folds, int(counts.min())), shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # 300 lbfgs steps are plenty for ranking; a warning per fold is noise
        warnings.simplefilter("ignore", ConvergenceWarning)
        probs = cross_val_predict(model, x, y, cv=splitter, method="predict_proba")
    full = np.zeros((len(y), int(y.max()) + 1))
    full[:, present] = probs
    return full


def label_issues_skipped(labels: torch.Tensor) -> str | None:
    """Why label errors cannot be looked for in a labelled dataset (None when they can): cross-fitting needs
    at least two classes, each with at least two items."""
    present, counts = np.unique(labels.numpy(), return_counts=True)
    if len(present) < 2:
        return "label errors need at least 2 classes with items"
    if counts.min() < 2:
        return "label errors need at least 2 items in every class"
    return None


def label_issues(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Ids whose given label confident learning doubts (Northcutt et al. 2021, the confident joint): class j's
    threshold is the mean p_j over items labelled j; an item counts toward the class among those it clears
    with the highest p; off-diagonal items are issues. Returned worst first (lowest p of the given label)."""
    k = probs.shape[1]
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(k)])
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -1.0)
    confident = masked.max(axis=1) >= 0
    assigned = masked.argmax(axis=1)
    issues = np.flatnonzero(confident & (assigned != labels))
    return issues[np.argsort(probs[issues, labels[issues]])]


def audit_images(images: torch.Tensor, labels: torch.Tensor | None, class_names: list[str] | None = None,
                 near_distance: int = 4, folds: int = 5, seed: int = 0, listed: int | None = 50,
                 find_label_issues: bool = True) -> dict:
    """All findings for one image dataset; each lists up to `listed` ids (None: all; counts are complete).
    `find_label_issues=False` skips the cross-fitted classifier (the slow part) when labels are not needed."""
    n = images.shape[0]
    exact = exact_duplicates(images)
    # dHash is for photographs: on Fashion-MNIST's 28 px clothes it put 3.4 million pairs within distance 4
    hashed = near_duplicates(images, near_distance, exact) if min(images.shape[-2:]) >= 32 else None
    neighbours = pixel_neighbours(images)
    close = feature_near_duplicates(images, exact=exact, neighbours=neighbours)
    outliers, outlier_score = density_outliers(neighbours[0])
    bright = images.float().mean(dim=(1, 2, 3)) / 255.0
    report: dict = {
        "items": n, "shape": list(images.shape[1:]),
        "exact_duplicates": {"groups": len(exact), "extra_copies": sum(len(g) - 1 for g in exact),
                             "first_groups": exact[:listed]},
        "near_duplicates": {"pairs": len(close), "first_pairs": [list(p) for p in close[:listed]],
                            "method": "pixel-space neighbours closer than 0.25 x the median nearest-neighbour "
                                      "distance"},
        "outliers": {"count": int(len(outliers)), "ids": outliers[:listed].tolist(),
                     "method": "mean distance to the 5 nearest neighbours (PCA pixel space) above Q3 + 3 IQR",
                     "median_score": round(float(np.median(outlier_score)), 4)},
        "hash_near_duplicates": ({"max_hamming_distance": near_distance, "pairs": len(hashed),
                                  "first_pairs": [list(p) for p in hashed[:listed]]} if hashed is not None
                                 else {"skipped": "dHash needs images of at least 32 x 32 pixels"}),
        "brightness": {"mean": float(bright.mean()), "std": float(bright.std()) if n > 1 else 0.0,
                       "darkest_ids": bright.argsort()[:5].tolist(), "brightest_ids": bright.argsort()[-5:].tolist(),
                       "blank_ids": torch.nonzero(images.reshape(n, -1).amax(1) == images.reshape(n, -1).amin(1))
                       .flatten().tolist()[:listed]},
    }
    if labels is not None:
        counts = torch.bincount(labels, minlength=int(labels.max()) + 1).tolist()
        names = class_names or [str(i) for i in range(len(counts))]
        report["classes"] = {"counts": dict(zip(names, counts, strict=True)),
                             "imbalance_ratio": max(counts) / max(1, min(counts))}
    skipped = label_issues_skipped(labels) if labels is not None and find_label_issues else None
    if skipped:
        report["label_issues"] = {"skipped": skipped, "count": None, "worst": [], "ids": []}
    elif labels is not None and find_label_issues:
        probs = out_of_fold_probabilities(images, labels, folds, seed)
        issues = label_issues(probs, labels.numpy())
        report["label_issues"] = {
            "method": "confident learning on out-of-fold logistic-regression probabilities",
            "count": int(len(issues)),
            "worst": [{"id": int(i), "given": names[int(labels[i])], "suggested": names[int(probs[i].argmax())],
                       "suggested_index": int(probs[i].argmax()), "p_given": round(float(probs[i, labels[i]]), 4)}
                      for i in issues[:listed]],
            "ids": issues.tolist(),
        }
    return report


def finding_ids(report: dict) -> list[int]:
    """Every id a finding of `report` lists: the items whose names audit.json spells out."""
    ids = [i for g in report["exact_duplicates"]["first_groups"] for i in g]
    ids += [i for p in report["near_duplicates"]["first_pairs"] for i in p[:2]]
    ids += [i for p in report["hash_near_duplicates"].get("first_pairs", []) for i in p[:2]]
    ids += report["outliers"]["ids"] + report["brightness"]["blank_ids"]
    ids += [w["id"] for w in report.get("label_issues", {}).get("worst", [])]
    return ids


def thumbnail(images: torch.Tensor, i: int, caption: str, size: int = 48) -> str:
    """Item i as a small inline PNG with its caption (escaped): what a person looks at to judge a finding."""
    from genlab.core.html import img_tag
    from genlab.modalities.image.samples import image_grid, png_bytes

    picture = images[i:i + 1].float() / 255.0
    side = max(picture.shape[-2:])
    if side > size:  # keep the page small: a finding needs a glance, not the full image
        picture = F.interpolate(picture, scale_factor=size / side, mode="area")
    data = png_bytes(image_grid(picture, pad=0), scale=max(1, size // max(picture.shape[-2:])))
    return (f'<figure style="display:inline-block;margin:2px 4px;text-align:center">{img_tag(data, caption)}'
            f'<figcaption><small>{html.escape(caption)}</small></figcaption></figure>')


def finding_pictures(images: torch.Tensor, report: dict, shown: int = 8) -> dict[str, str]:
    """Per finding, HTML with thumbnails: duplicate groups and pairs side by side (one line each), outliers,
    and label errors captioned with the given and the predicted label."""
    names = report.get("names", {})

    def name(i: int) -> str:
        return names.get(str(i), f"#{i}")

    def groups(gs) -> str:
        return "".join(f"<div>{''.join(thumbnail(images, i, name(i)) for i in g)}</div>" for g in gs[:shown])

    issues = report.get("label_issues", {})
    return {"Exact duplicate copies": groups(report["exact_duplicates"]["first_groups"]),
            "Near-duplicate pairs": groups([p[:2] for p in report["near_duplicates"]["first_pairs"]]),
            "Outliers (low density)": "".join(thumbnail(images, i, name(i)) for i in report["outliers"]["ids"][:shown]),
            "Blank images": "".join(thumbnail(images, i, name(i)) for i in report["brightness"]["blank_ids"][:shown]),
            "Likely label errors": "".join(thumbnail(images, w["id"], f"{name(w['id'])}: {w['given']} -> "
                                                     f"{w['suggested']}") for w in issues.get("worst", [])[:shown])}


def write_audit(report: dict, out, images: torch.Tensor | None = None) -> None:
    """audit.json (everything) and audit.html (the findings, their first ids and, given the images, thumbnails
    named as in report["names"]; one self-contained page)."""
    from genlab.core.html import write_findings

    rows = [("Items", report["items"], ""),
            ("Exact duplicate copies", report["exact_duplicates"]["extra_copies"],
             report["exact_duplicates"]["first_groups"][:20]),
            ("Near-duplicate pairs", report["near_duplicates"]["pairs"],
             report["near_duplicates"]["first_pairs"][:20]),
            ("Unreadable files", report.get("unreadable", {}).get("count", 0),
             report.get("unreadable", {}).get("items", [])[:10]),
            ("Outliers (low density)", report["outliers"]["count"], report["outliers"]["ids"][:20]),
            ("Blank images", len(report["brightness"]["blank_ids"]), report["brightness"]["blank_ids"][:20])]
    if "label_issues" in report:
        issues = report["label_issues"]
        rows.append(("Likely label errors", "not measured" if "skipped" in issues else issues["count"],
                     issues.get("skipped") or [(w["id"], w["given"], w["suggested"]) for w in issues["worst"][:20]]))
        rows.append(("Class counts", round(report["classes"]["imbalance_ratio"], 2), report["classes"]["counts"]))
    if images is not None:
        pictures = finding_pictures(images, report)
        rows = [(*row, pictures.get(row[0], "")) for row in rows]
    note = "ids are row numbers; audit.json's names maps them to files" if report.get("names") else \
        "ids are row numbers"
    write_findings(out, report, rows, "Dataset audit", f"dataset {report.get('dataset', '')}; {note}")


CLEAN_OPERATIONS = ("exact", "near", "labels", "outliers", "relabel")  # relabel: suggested class, not dropped


def check_operations(operations: list[str]) -> None:
    if "labels" in operations and "relabel" in operations:
        raise GenlabError("choose labels (drop the doubted items) or relabel (give them the suggested class)")
    unknown = [op for op in operations if op not in CLEAN_OPERATIONS]
    if unknown or not operations:
        raise GenlabError(f"unknown clean operation {(unknown or [''])[0]!r}; choose from: "
                          + ", ".join(CLEAN_OPERATIONS))


def clean_images(images: torch.Tensor, labels: torch.Tensor | None, report: dict, operations: list[str],
                 protected: set[int] = frozenset()):
    """Apply audit fixes (`report` from audit_images with listed=None, so every id is there): `exact` keeps
    the first of each identical group, `near` drops the later item of each near-duplicate pair, `labels` drops
    the items confident learning doubts, `outliers` drops the low-density items. `protected` ids (the test
    split: the yardstick stays fixed) are never removed. Returns the ids kept and, per operation, the ids
    (rows of the input) it removed."""
    check_operations(operations)
    skipped = report.get("label_issues", {}).get("skipped")
    if skipped and {"labels", "relabel"} & set(operations):
        raise GenlabError(f"cannot drop or relabel likely label errors: {skipped}; leave labels/relabel out of --drop")
    found = {"exact": [i for g in report["exact_duplicates"]["first_groups"] for i in g[1:]],
             "near": [j for _, j, _ in report["near_duplicates"]["first_pairs"]],
             "labels": report.get("label_issues", {}).get("ids", []), "outliers": report["outliers"]["ids"]}
    removed = removal_plan(found, [op for op in operations if op != "relabel"], protected)  # relabel: see relabelled
    gone = set().union(*removed.values())
    keep = torch.tensor(sorted(set(range(images.shape[0])) - gone), dtype=torch.long)
    return keep, removed


def relabelled(labels: torch.Tensor, report: dict, protected: set[int] = frozenset()) -> tuple[torch.Tensor, list]:
    """Labels with each doubted item (report from audit_images with listed=None) given the class the
    out-of-fold model suggests; `protected` ids keep theirs. Returns the new labels and (id, old, new)."""
    new = labels.clone()
    changes = []
    for w in report["label_issues"]["worst"]:
        if w["id"] not in protected:
            changes.append((w["id"], int(labels[w["id"]]), w["suggested_index"]))
            new[w["id"]] = w["suggested_index"]
    return new, changes
