"""Studies on the digits: data quality (damage, clean, train, score) and synthetic utility, both resumable."""

import json

import torch
import yaml

from genlab.studies.synthetic_utility import stratified_subset, train_and_test

RECIPE = {"name": "digits-cvae", "family": "vae", "data": {"source": "digits"},
          "model": {"latent_dim": 8, "architecture": "mlp", "hidden": [128], "conditional": True},
          "train": {"steps": 100, "batch_size": 64, "lr": 3e-3, "val_every": 50, "checkpoint_every": 50,
                    "log_every": 50}}


def test_data_quality_study_damages_cleans_scores_and_resumes(tmp_path, run_cli):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    args = ["study", "data-quality", tmp_path / "r.yaml", "--out", tmp_path / "s", "--label-noise", "0,0.4",
            "--duplicates", "0", "--subsample", "1", "--samples", "300"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    arms = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "s" / "arms").glob("*.json")}
    assert set(arms) == {"base", "labels-0.4", "labels-0.4+clean"}
    for name, arm in arms.items():  # each arm trained on its own version, recorded in its run
        recorded = json.loads((tmp_path / "s" / "runs" / name / "dataset.json").read_text())
        assert recorded["fingerprint"] == arm["fingerprint"] == recorded["version"]["fingerprint"]
    # the noise shows in the samples, and cleaning the labels recovers most of it
    assert arms["labels-0.4"]["label_agreement"] < arms["base"]["label_agreement"] - 0.05
    assert arms["labels-0.4+clean"]["label_agreement"] > arms["labels-0.4"]["label_agreement"]
    assert arms["labels-0.4+clean"]["removed_by_clean"]["labels"] > 0
    assert arms["labels-0.4+clean"]["train_items"] < arms["labels-0.4"]["train_items"]
    assert (tmp_path / "s" / "data_quality.png").stat().st_size > 10_000
    assert "labels-0.4+clean" in (tmp_path / "s" / "report.html").read_text()

    # resumable: finished arms are kept; a lost result is re-scored without retraining; a run stopped before
    # its summary resumes from its checkpoint instead of starting over
    summary = tmp_path / "s" / "runs" / "base" / "train_summary.json"
    trained_at = summary.stat().st_mtime_ns
    (tmp_path / "s" / "arms" / "base.json").unlink()
    (tmp_path / "s" / "runs" / "labels-0.4" / "train_summary.json").unlink()
    (tmp_path / "s" / "arms" / "labels-0.4.json").unlink()
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert out.count("done before, kept") == 1 and summary.stat().st_mtime_ns == trained_at
    again = json.loads((tmp_path / "s" / "arms" / "base.json").read_text())
    assert again["fid"] == arms["base"]["fid"]  # same weights, same seeded samples
    resumed = json.loads((tmp_path / "s" / "runs" / "labels-0.4" / "train_summary.json").read_text())
    assert resumed["steps"] == 100


def test_study_rejects_bad_input(tmp_path, run_cli):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**RECIPE, "data": {"source": "digits"}}))
    code, _, err = run_cli("study", "data-quality", tmp_path / "r.yaml", "--out", tmp_path / "s",
                           "--label-noise", "0,abc")
    assert code == 2 and "comma-separated numbers" in err
    code, _, err = run_cli("study", "data-quality", tmp_path / "r.yaml", "--out", tmp_path / "s",
                           "--label-noise", "1.5")
    assert code == 2 and "label_noise must be in [0, 1)" in err
    code, _, err = run_cli("study", "synthetic-utility", tmp_path, "--out", tmp_path / "u")
    assert code == 2 and "error" in err.lower()


def test_synthetic_utility_study_runs_every_arm_once(tmp_path, run_cli):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    code, _, err = run_cli("train", tmp_path / "r.yaml", "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    args = ["study", "synthetic-utility", tmp_path / "runs" / "digits-cvae", "--out", tmp_path / "u",
            "--fractions", "0.2,1", "--seeds", "0,1", "--per-class", "20", "--steps", "60"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    arms = [json.loads(p.read_text()) for p in (tmp_path / "u" / "arms").glob("*.json")]
    assert len(arms) == 2 * (2 * 2 + 1)
    kinds = {(a["arm_kind"], a["fraction"]): a for a in arms if a["seed"] == 0}
    assert kinds[("synthetic only", 0.0)]["train_images"] == 200
    real = kinds[("real", 0.2)]["train_images"]
    assert kinds[("real + synthetic", 0.2)]["train_images"] == real + 200
    assert all(0.0 <= a["accuracy"] <= 1.0 for a in arms)
    assert "synthetic only" in out and (tmp_path / "u" / "synthetic_utility.png").is_file()
    synthetic = tmp_path / "u" / "synthetic.npz"
    drawn_at = synthetic.stat().st_mtime_ns
    code, out, err = run_cli(*args)
    assert code == 0 and out.count("done before, kept") == 10 and synthetic.stat().st_mtime_ns == drawn_at


def test_stratified_subset_keeps_every_class_in_proportion():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    ids = stratified_subset(labels, 0.1, seed=0)
    assert torch.bincount(labels[ids]).tolist() == [50, 30, 20]
    assert torch.equal(stratified_subset(labels, 0.1, seed=0), ids)
    assert not torch.equal(stratified_subset(labels, 0.1, seed=1), ids)
    assert torch.bincount(labels[stratified_subset(labels, 0.001, 0)]).tolist() == [1, 1, 1]


def test_downstream_accuracy_separates_real_labels_from_shuffled_ones():
    """The utility metric can fail: the same images with shuffled labels score near chance."""
    from genlab.config import DataConfig
    from genlab.modalities.image.data import load_image_dataset

    ds = load_image_dataset(DataConfig(source="digits"))
    x, y = ds.split_images("train"), ds.split_labels("train")
    tx, ty = ds.split_images("test"), ds.split_labels("test")
    good = train_and_test(x, y, tx, ty, 10, steps=150, seed=0)["accuracy"]
    shuffled = y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(0))]
    bad = train_and_test(x, shuffled, tx, ty, 10, steps=150, seed=0)["accuracy"]
    assert good > 0.8 and bad < 0.3, (good, bad)
