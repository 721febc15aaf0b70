"""Dataset audit against planted problems: exact copies, near copies and flipped labels in the digits data."""

import numpy as np
import torch

from genlab.config import DataConfig
from genlab.modalities.image.audit import audit_images, difference_hash, exact_duplicates, label_issues, near_duplicates
from genlab.modalities.image.data import _load_digits, load_image_dataset
from genlab.modalities.image.versions import degraded_version, version_config


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
    assert code == 2 and err.strip() == "error: data path not found: x"  # one clear line


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
    parent = load_image_dataset(DataConfig(source="npz", path=str(tmp_path / "planted.npz")))
    test_ids = set(parent.splits["test"].tolist())  # the yardstick: never cleaned
    assert not test_ids & set().union(*removed.values())
    assert removed["exact"] == set(range(n, n + k)) - test_ids  # the later copy of each pair, unless in test
    assert removed["near"] == set(range(n + k, n + 2 * k)) - test_ids  # the noisy copies
    assert len(removed["labels"] & set(flipped.tolist())) >= 0.7 * len(set(flipped.tolist()) - test_ids)
    assert manifest["items"] == manifest["parent"]["items"] - sum(len(v) for v in removed.values())
    assert manifest["fingerprint"] != manifest["parent"]["fingerprint"]
    with np.load(tmp_path / "v1" / "data.npz") as data:
        assert data["images"].shape[0] == manifest["items"]
    child = load_image_dataset(version_config(tmp_path / "v1"))
    assert torch.equal(child.split_images("test"), parent.split_images("test"))  # splits travel with it
    assert torch.equal(child.split_labels("test"), parent.split_labels("test"))
    code, out, err = run_cli(*args, "--out", tmp_path / "v2")
    assert json.loads((tmp_path / "v2" / "manifest.json").read_text())["fingerprint"] == manifest["fingerprint"]
    code, _, err = run_cli(*args, "--out", tmp_path / "v1")
    assert code == 2 and "never overwritten" in err


def test_outliers_are_the_isolated_items():
    images, _, _, _ = _load_digits()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8)  # nothing like a digit
    report = audit_images(torch.from_numpy(np.concatenate([images, noise])), None, listed=None)
    found = set(report["outliers"]["ids"])
    planted = set(range(len(images), len(images) + 20))
    assert len(found & planted) == 20 and len(found - planted) <= 0.01 * len(images)


def test_degraded_version_damages_only_the_training_split(tmp_path):
    parent = load_image_dataset(DataConfig(source="digits"))
    train = parent.splits["train"]
    m = degraded_version(parent, tmp_path / "d", label_noise=0.3, duplicates=0.2, subsample=0.5, seed=3)
    child = load_image_dataset(version_config(tmp_path / "d"))
    for split in ("val", "test"):
        assert torch.equal(child.split_images(split), parent.split_images(split))
        assert torch.equal(child.split_labels(split), parent.split_labels(split))
    ops = {o["op"]: o for o in m["operations"]}
    kept = round(train.numel() * 0.5)
    assert abs(child.splits["train"].numel() - kept) <= parent.num_classes  # stratified rounding
    assert ops["duplicate"]["count"] == round(child.splits["train"].numel() * 0.2)
    distinct = len(exact_duplicates(child.split_images("train")))
    assert distinct > 0
    assert ops["label-noise"]["count"] == round(child.splits["train"].numel() * 0.3)
    counts = torch.bincount(child.split_labels("train"), minlength=10)
    assert counts.min() > 0
    # reproducible: the same seed gives the same version, another seed another one
    assert degraded_version(parent, tmp_path / "e", 0.3, 0.2, 0.5, seed=3)["fingerprint"] == m["fingerprint"]
    assert degraded_version(parent, tmp_path / "f", 0.3, 0.2, 0.5, seed=4)["fingerprint"] != m["fingerprint"]
    clean = degraded_version(parent, tmp_path / "g")
    assert clean["fingerprint"] == parent.fingerprint  # no damage: same content, same fingerprint


def test_label_noise_changes_exactly_the_listed_labels(tmp_path):
    parent = load_image_dataset(DataConfig(source="digits"))
    m = degraded_version(parent, tmp_path / "d", label_noise=0.1, seed=0)
    child = load_image_dataset(version_config(tmp_path / "d"))
    changed = torch.nonzero(child.labels != parent.labels).flatten().tolist()
    assert changed == m["operations"][0]["flipped_ids"]
    assert set(changed) <= set(parent.splits["train"].tolist())
    assert len(changed) == round(0.1 * parent.splits["train"].numel())


def test_relabel_restores_flipped_labels_without_dropping_items(tmp_path, run_cli):
    import json

    images, labels, exact_src, near_src, flipped, n = planted_digits()
    true = torch.from_numpy(_load_digits()[1])
    np.savez(tmp_path / "p.npz", images=images[:n].numpy(), labels=labels[:n].numpy())
    (tmp_path / "r.yaml").write_text(f"data:\n  source: npz\n  path: {tmp_path / 'p.npz'}\n")
    code, out, err = run_cli("data", "clean", tmp_path / "r.yaml", "--drop", "relabel", "--out", tmp_path / "v")
    assert code == 0, err
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    child = load_image_dataset(version_config(tmp_path / "v"))
    assert child.images.shape[0] == n and torch.equal(child.images, images[:n])  # nothing dropped
    changed = {i for i, _, _ in manifest["operations"][0]["changed"]}
    test_ids = set(child.splits["test"].tolist())
    movable = set(flipped.tolist()) - test_ids
    restored = sum(int(child.labels[i] == true[i]) for i in movable)
    print(f"relabel: {restored}/{len(movable)} flipped labels restored; {len(changed - movable)} other labels changed")
    assert restored >= 0.6 * len(movable) and not changed & test_ids
    code, _, err = run_cli("data", "clean", tmp_path / "r.yaml", "--drop", "labels,relabel", "--out", tmp_path / "w")
    assert code == 2 and "choose labels" in err
