"""Feature extractors, the cached real features, image metrics in eval, and `genlab compare`."""

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error

from genlab.config import DataConfig
from genlab.core.errors import GenlabError
from genlab.modalities.image.data import images_to_unit, load_image_dataset
from genlab.modalities.image.evaluate import compute_image_metrics
from genlab.modalities.image.features import ClassifierFeatures, cache_root, real_features, train_domain_classifier
from genlab.modalities.image.inception import FIDInceptionV3, load_fid_inception

RECIPES = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def digits():
    ds = load_image_dataset(DataConfig())
    info = train_domain_classifier(ds, epochs=3)
    return ds, info


def test_domain_classifier_is_accurate_and_cached(digits):
    ds, info = digits
    assert info["test_accuracy"] >= 0.9
    extractor = ClassifierFeatures(ds)
    out = extractor.extract(images_to_unit(ds.split_images("test")[:10]))
    assert out["features"].shape == (10, 128)
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(10, dtype=torch.float64))


def test_real_features_are_computed_once(digits):
    ds, _ = digits
    extractor = ClassifierFeatures(ds)
    first = real_features(ds, extractor)
    files = list((cache_root() / "features" / ds.fingerprint).glob("*.safetensors"))
    assert files
    extractor.extract = None  # a second call must not extract again
    again = real_features(ds, extractor)
    assert torch.equal(first["features"], again["features"])


def test_image_metrics_rank_real_above_noise(digits):
    ds, _ = digits
    real_train = images_to_unit(ds.split_images("train")[:500])
    noise = torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    good = compute_image_metrics(ds, real_train, "classifier", ["fid", "kid", "precision_recall", "inception_score"])
    bad = compute_image_metrics(ds, noise, "classifier", ["fid", "kid", "precision_recall", "inception_score"])
    assert good["fid"]["value"] < 0.5 * bad["fid"]["value"]  # 180 real test images: FID is biased up
    assert good["kid"]["mean"] < bad["kid"]["mean"]
    assert good["precision_recall"]["precision"] > 0.8 > bad["precision_recall"]["precision"]
    assert good["inception_score"]["mean"] > bad["inception_score"]["mean"]
    assert good["fid"]["n_fake"] == 500 and good["fid"]["n_real"] == ds.splits["test"].numel()
    assert good["fid"]["seconds"] >= 0


def test_knn_metrics_compare_as_many_real_as_generated_features(digits):
    """With fewer samples than test images, precision/recall and density/coverage use a seeded real subset of
    the same size (k-NN radii depend on the set size); FID keeps every real feature."""
    ds, _ = digits
    few = images_to_unit(ds.split_images("train")[:60])
    out = compute_image_metrics(ds, few, "classifier", ["fid", "precision_recall", "density_coverage"])
    assert out["fid"]["n_real"] == ds.splits["test"].numel() and out["fid"]["n_fake"] == 60
    for name in ("precision_recall", "density_coverage"):
        assert (out[name]["n_real"], out[name]["n_fake"]) == (60, 60)
    again = compute_image_metrics(ds, few, "classifier", ["precision_recall"])
    assert again["precision_recall"]["recall"] == out["precision_recall"]["recall"]  # the subset is seeded


def test_nan_samples_give_explicit_errors(digits):
    ds, _ = digits
    samples = torch.rand(20, 1, 8, 8)
    samples[3, 0, 0, 0] = float("nan")
    out = compute_image_metrics(ds, samples, "classifier", ["fid", "kid"])
    assert out["fid"]["error"] == "1 of 20 samples contain NaN/inf pixels"
    assert "error" in out["kid"]


def test_missing_inception_weights_is_one_clear_error(digits, tmp_path):
    ds, _ = digits
    with pytest.raises(GenlabError, match="pt_inception-2015-12-05-6726825d.pth.*GENLAB_INCEPTION_WEIGHTS"):
        load_fid_inception(tmp_path / "absent.pth")
    out = compute_image_metrics(ds, torch.rand(20, 1, 8, 8), "inception", ["fid"])
    assert "FID Inception weights not found" in out["fid"]["error"]


def test_inception_weights_load_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "w.pth")
    loaded = load_fid_inception(tmp_path / "w.pth")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        f1, l1 = net(x)
        f2, l2 = loaded(x)
    assert f1.shape == (2, 2048) and l1.shape == (2, 1008)
    torch.testing.assert_close(f1, f2)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(GenlabError, match="does not hold FID Inception-v3 weights"):
        load_fid_inception(tmp_path / "bad.pth")


def test_features_train_and_compare_through_the_cli(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))  # its 1-epoch classifier stays its own
    code, out, err = run_cli("features", "train", RECIPES / "digits-vae.yaml", "--epochs", "1")
    assert code == 0, err
    assert "test accuracy" in out
    small = ["train.steps=20", "train.val_every=0", "eval.iwae_k=5", "eval.iwae_images=10", "eval.n_samples=50",
             "eval.metric_samples=200", "model.widths=[4,8]", "--runs-dir", tmp_path]
    for name in ("a", "b"):
        code, _, err = run_cli("train", RECIPES / "digits-vae.yaml", f"name={name}", *small)
        assert code == 0, err
    code, out, err = run_cli("compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp")
    assert code == 0, err
    csv = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert csv[0].startswith("run,family,fid.value") and len(csv) == 3
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["image"]["fid"]["n_fake"] == 200
    code, _, err = run_cli("compare", tmp_path / "nope")
    assert_one_line_error(code, err, "run directory not found")


def test_label_agreement_tells_obeyed_labels_from_ignored_ones(digits):
    from genlab.modalities.image.evaluate import label_agreement

    ds, info = digits
    images = images_to_unit(ds.split_images("test"))
    labels = ds.split_labels("test")
    obeyed = label_agreement(ds, images, labels, "classifier")
    ignored = label_agreement(ds, images, (labels + 1) % 10, "classifier")
    assert obeyed["accuracy"] == pytest.approx(info["test_accuracy"])
    assert ignored["accuracy"] < 0.1
    assert "error" in label_agreement(ds, images, labels, "inception")
