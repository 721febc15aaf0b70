"""Dataset audit against planted problems: exact copies, near copies and flipped labels in the digits data."""

import numpy as np
import torch

from genlab.data.audit import audit_images, difference_hash, exact_duplicates, label_issues, near_duplicates
from genlab.data.images import _load_digits


def planted_digits(seed: int = 0):
    """The 1,797 digits plus 5% exact copies, 5% noisy copies, and 5% of the labels flipped."""
    images, labels, _, _ = _load_digits()
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    rng = np.random.default_rng(seed)
    n = images.shape[0]
    k = int(0.05 * n)
    exact_src = rng.choice(n, k, replace=False)
    near_src = rng.choice(np.setdiff1d(np.arange(n), exact_src), k, replace=False)
    noisy = images[near_src].float() + torch.from_numpy(rng.normal(0, 6, images[near_src].shape)).float()
    images = torch.cat([images, images[exact_src], noisy.clamp(0, 255).round().to(torch.uint8)])
    labels = torch.cat([labels, labels[exact_src], labels[near_src]])
    flipped = rng.choice(n, k, replace=False)  # among the originals
    labels[flipped] = (labels[flipped] + torch.from_numpy(rng.integers(1, 10, k))) % 10
    return images, labels, exact_src, near_src, flipped, n


def test_planted_problems_are_found():
    images, labels, exact_src, near_src, flipped, n = planted_digits()
    k = len(exact_src)
    report = audit_images(images, labels, listed=10_000)
    groups = report["exact_duplicates"]["first_groups"]
    found_exact = {g[-1] for g in groups if g[-1] >= n}
    exact_recall = len(found_exact & set(range(n, n + k))) / k
    pairs = {(i, j) for i, j, _ in report["near_duplicates"]["first_pairs"]}
    planted_near = {(int(s), n + k + t) for t, s in enumerate(near_src)}
    near_recall = len(pairs & planted_near) / k
    flagged = set(report["label_issues"]["ids"])
    flip_recall = len(flagged & set(flipped.tolist())) / k
    flip_precision = len(flagged & set(flipped.tolist())) / max(1, len(flagged))
    print(f"exact recall {exact_recall:.3f}, near recall {near_recall:.3f} (precision "
          f"{len(pairs & planted_near) / max(1, len(pairs)):.3f} of {len(pairs)} pairs), "
          f"flipped labels recall {flip_recall:.3f} precision {flip_precision:.3f} ({len(flagged)} flagged)")
    assert exact_recall == 1.0 and report["exact_duplicates"]["extra_copies"] == k
    assert near_recall >= 0.9
    assert flip_recall >= 0.7
    assert flip_precision >= 0.5


def test_near_duplicate_search_finds_every_pair_brute_force_finds():
    rng = np.random.default_rng(1)
    base = torch.from_numpy(rng.integers(0, 256, (60, 1, 16, 16), dtype=np.uint8))
    noisy = (base.float() + torch.from_numpy(rng.normal(0, 20, base.shape)).float()).clamp(0, 255).to(torch.uint8)
    images = torch.cat([base, noisy])
    hashes = difference_hash(images)
    brute = set()
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            if bin(int(hashes[i] ^ hashes[j])).count("1") <= 4:
                brute.add((i, j))
    assert {(i, j) for i, j, _ in near_duplicates(images, 4)} == brute and brute


def test_exact_duplicates_and_confident_learning_on_a_toy_case():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    images[1, 0, 0, 0] = 5
    assert exact_duplicates(images) == [[0, 2, 3]]
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.88, 0.12]])
    labels = np.array([0, 0, 1, 1, 1])  # the last looks like class 0
    assert label_issues(probs, labels).tolist() == [4]


def test_audit_cli_writes_json_and_html(tmp_path, run_cli):
    import json

    (tmp_path / "r.yaml").write_text("data:\n  source: digits\n")
    code, out, err = run_cli("data", "audit", tmp_path / "r.yaml", "--out", tmp_path / "audit")
    assert code == 0, err
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["items"] == 1797 and report["exact_duplicates"]["extra_copies"] == 0
    assert "Likely label errors" in (tmp_path / "audit" / "audit.html").read_text()
    (tmp_path / "t.yaml").write_text("data:\n  source: txt\n  path: x\n")
    code, _, err = run_cli("data", "audit", tmp_path / "t.yaml")
    assert code == 2 and "image datasets so far" in err


def test_clean_writes_an_immutable_version_with_a_manifest(tmp_path, run_cli):
    import json

    images, labels, exact_src, near_src, flipped, n = planted_digits()
    k = len(exact_src)
    np.savez(tmp_path / "planted.npz", images=images.numpy(), labels=labels.numpy())
    (tmp_path / "r.yaml").write_text(f"data:\n  source: npz\n  path: {tmp_path / 'planted.npz'}\n")
    args = ["data", "clean", tmp_path / "r.yaml", "--drop", "exact,near,labels"]
    code, out, err = run_cli(*args, "--out", tmp_path / "v1")
    assert code == 0, err
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    removed = {o["op"]: set(o["removed_ids"]) for o in manifest["operations"]}
    assert set(range(n, n + k)) <= removed["exact"] | {int(s) for s in exact_src}  # one of each copy pair
    assert len(removed["exact"]) == k
    assert set(range(n + k, n + 2 * k)) == removed["near"]  # the noisy copies
    assert len(removed["labels"] & set(flipped.tolist())) >= 0.7 * k
    assert manifest["items"] == manifest["parent"]["items"] - sum(len(v) for v in removed.values())
    assert manifest["fingerprint"] != manifest["parent"]["fingerprint"]
    with np.load(tmp_path / "v1" / "data.npz") as data:
        assert data["images"].shape[0] == manifest["items"]
    code, out, err = run_cli(*args, "--out", tmp_path / "v2")
    assert json.loads((tmp_path / "v2" / "manifest.json").read_text())["fingerprint"] == manifest["fingerprint"]
    code, _, err = run_cli(*args, "--out", tmp_path / "v1")
    assert code == 2 and "never overwritten" in err
