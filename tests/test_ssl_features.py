"""The self-supervised (`ssl`) feature extractor: augmentations, training and caching without labels, and
image metrics in eval with eval.extractor=ssl."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_config

from genlab.config import DataConfig
from genlab.modalities.image.data import images_to_unit, load_image_dataset
from genlab.modalities.image.evaluate import compute_image_metrics, extractor_for
from genlab.modalities.image.ssl import SSLFeatures, nt_xent, random_views, ssl_dir, train_ssl_encoder


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """120 unlabelled 12x12 RGB images: blobs of two colours at random places."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:12, :12]
    cy, cx = rng.uniform(3, 9, (2, 120, 1, 1))
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6)  # 120 x 12 x 12
    colour = np.where(rng.random((120, 1, 1, 1)) < 0.5, [1.0, 0.3, 0.1], [0.1, 0.4, 1.0])
    images = (blob[..., None] * colour * 255).astype(np.uint8)  # N x H x W x C
    path = tmp_path_factory.mktemp("unlabelled") / "blobs.npz"
    np.savez(path, images=images)
    return DataConfig(source="npz", path=str(path))


def test_views_keep_shape_and_range_and_are_seeded():
    x = torch.rand(16, 3, 10, 14)
    a = random_views(x, torch.Generator().manual_seed(1))
    b = random_views(x, torch.Generator().manual_seed(1))
    c = random_views(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    grey = random_views(torch.rand(8, 1, 28, 28), torch.Generator().manual_seed(0))
    assert grey.shape == (8, 1, 28, 28) and 0 <= grey.min() and grey.max() <= 1


def test_full_crop_without_jitter_is_the_image_or_its_mirror():
    x = torch.rand(32, 1, 9, 9)
    out = random_views(x, torch.Generator().manual_seed(0), min_scale=1.0, aspect=1.0, jitter_p=0.0)
    same = (out - x).abs().flatten(1).amax(1) < 1e-5
    mirrored = (out - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()


def test_nt_xent_is_low_for_matching_views_and_chance_for_random_ones():
    z = torch.randn(64, 128)
    assert nt_xent(z, z, 0.05) < 0.01
    chance = nt_xent(torch.randn(64, 16), torch.randn(64, 16), 1e4)
    assert chance == pytest.approx(np.log(127), rel=1e-3)


def test_encoder_trains_without_labels_and_is_cached(unlabelled):
    ds = load_image_dataset(unlabelled)
    assert ds.labels is None
    info = train_ssl_encoder(ds, epochs=3, batch_size=32)
    assert info["channels"] == 3 and info["steps"] > 0 and np.isfinite(info["final_loss"])
    assert (ssl_dir(ds) / "encoder.safetensors").is_file()
    saved = json.loads((ssl_dir(ds) / "encoder.json").read_text())
    assert saved["epochs"] == 3 and saved["train_seconds"] >= 0
    extractor = extractor_for(ds, "ssl", train_if_missing=True, quiet=True)  # cached: no second training
    assert extractor.info == saved and extractor.name.startswith("ssl-")
    out = extractor.extract(images_to_unit(ds.images[:5]))
    assert out["features"].shape == (5, 128) and out["probs"] is None


def test_missing_encoder_is_trained_once_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    ds = load_image_dataset(DataConfig())  # digits, 8x8 grey
    assert "ssl encoder" in compute_image_metrics(ds, torch.rand(10, 1, 8, 8), "ssl", ["fid"], False)["fid"]["error"]
    calls = []
    monkeypatch.setattr("genlab.modalities.image.ssl.train_ssl_encoder",
                        lambda d, quiet: calls.append(1) or train_ssl_encoder(d, epochs=1, quiet=quiet))
    real = images_to_unit(ds.split_images("train"))
    out = compute_image_metrics(ds, real, "ssl", ["fid", "kid", "inception_score", "precision_recall"])
    again = compute_image_metrics(ds, torch.rand(200, 1, 8, 8), "ssl", ["fid", "kid"])
    assert calls == [1]
    assert out["extractor"] == "ssl" and "inception_score" not in out  # no class probabilities: no IS
    assert out["fid"]["value"] < again["fid"]["value"] and out["kid"]["mean"] < again["kid"]["mean"]


def test_eval_with_the_ssl_extractor_gives_fid_and_kid(unlabelled, tmp_path, run_cli):
    from genlab.pipeline import evaluate_run, open_run, train_config

    cfg = tiny_config(data={"source": "npz", "path": unlabelled.path}, model={"conditional": False},
                      eval={"extractor": "ssl", "metric_samples": 60, "n_samples": 30, "memorisation_reference": 20})
    run, _ = train_config(cfg, tmp_path)
    metrics = evaluate_run(open_run(run.root))["image"]
    assert metrics["extractor"] == "ssl" and "inception_score" not in metrics
    assert np.isfinite(metrics["fid"]["value"]) and metrics["fid"]["n_fake"] == 60
    assert np.isfinite(metrics["kid"]["mean"])
    assert SSLFeatures.is_trained(open_run(run.root).dataset)  # trained by eval, as the classifier would be
    code, out, err = run_cli("eval", run.root, "eval.extractor=classifier")
    assert code == 0, err  # unlabelled: the classifier's metrics are explicit errors, not a crash
    assert "eval.extractor=ssl" in json.loads((run.root / "metrics.json").read_text())["image"]["fid"]["error"]


def test_features_train_cli_trains_either_extractor(unlabelled, tmp_path, run_cli, monkeypatch):
    from conftest import assert_one_line_error

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "blobs.yaml"
    recipe.write_text(f"name: blobs\nfamily: vae\ndata:\n  source: npz\n  path: {unlabelled.path}\n")
    code, out, err = run_cli("features", "train", recipe, "--extractor", "ssl", "--epochs", "2")
    assert code == 0, err
    assert "ssl encoder for" in out and "contrastive loss" in out
    assert json.loads(next((tmp_path / "cache" / "ssl").glob("*/encoder.json")).read_text())["epochs"] == 2
    code, _, err = run_cli("features", "train", recipe)  # the classifier needs labels: says to use ssl
    assert_one_line_error(code, err, "needs a labelled dataset", "eval.extractor=ssl")
