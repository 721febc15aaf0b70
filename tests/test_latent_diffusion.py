"""The autoencoder family and latent diffusion (model.latent_from): shapes, reconstruction, training and sampling
through the CLI in pixel space, exact resume, a frozen autoencoder, and the clear errors of a wrong latent_from."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import assert_one_line_error
from test_trainer import assert_same_weights, check_resume_is_bit_identical, weights_of

from genlab import pipeline
from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_save_tensors, load_tensors
from genlab.core.spec import DataSpec
from genlab.models.autoencoder import Autoencoder, AutoencoderConfig

AE_MODEL = {"downsample": 4, "base_channels": 8, "latent_channels": 3, "kl_weight": 1e-6}
LD_MODEL = {"base_channels": 8, "channel_mults": [1, 2], "timesteps": 50, "sample_steps": 4}
QUIET = {"val_every": 0, "checkpoint_every": 0, "log_every": 10}


def shapes(n: int = 160, size: int = 32, seed: int = 0) -> np.ndarray:
    """Coloured squares and discs on dark backgrounds: structure an autoencoder can learn in seconds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(8, size - 8, 2)
        r = int(rng.integers(4, 8))
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        square = (abs(yy - cy) < r) & (abs(xx - cx) < r)
        images[i] = rng.integers(0, 80, 3)
        images[i][disc if i % 2 else square] = rng.integers(120, 256, 3)
    return images


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    """A tiny autoencoder run (32 px RGB shapes, 4x downsampling) trained for 50 steps: (run folder, data)."""
    root = tmp_path_factory.mktemp("latent")
    np.savez(root / "shapes.npz", images=shapes())
    data = {"source": "npz", "path": str(root / "shapes.npz")}
    cfg = config_from_dict({"name": "ae", "family": "autoencoder", "data": data, "model": AE_MODEL,
                            "train": {"steps": 50, "batch_size": 16, "lr": 2e-3, **QUIET}})
    run, _ = pipeline.train_config(cfg, root / "runs")
    return run.root, data


def latent_config(ae_root, data, name: str = "ld", **train):
    return config_from_dict({"name": name, "family": "diffusion", "data": data,
                             "model": {**LD_MODEL, "latent_from": str(ae_root)},
                             "train": {"steps": 6, "batch_size": 16, **QUIET, **train}})


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("downsample", [4, 8])
def test_autoencoder_shapes(size, downsample):
    model = Autoencoder(AutoencoderConfig(downsample=downsample, base_channels=8), DataSpec(3, size, size))
    x = torch.rand(2, 3, size, size) * 2 - 1
    mean, logvar = model.encode(x)
    side = size // downsample
    assert mean.shape == logvar.shape == (2, 4, side, side)
    assert model.decode(mean).shape == x.shape
    samples = model.sample(3, noise=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 3, size, size) and 0 <= float(samples.min()) <= float(samples.max()) <= 1


def test_autoencoder_takes_grey_images_and_refuses_a_size_it_cannot_halve():
    model = Autoencoder(AutoencoderConfig(downsample=8, base_channels=8), DataSpec(1, 32, 32))
    assert model.decode(model.encode(torch.zeros(1, 1, 32, 32))[0]).shape == (1, 1, 32, 32)
    with pytest.raises(GenlabError, match="must divide the image size 28x28"):
        Autoencoder(AutoencoderConfig(downsample=8), DataSpec(1, 28, 28))
    with pytest.raises(GenlabError, match="model.downsample"):
        AutoencoderConfig(downsample=2).validate()


def test_autoencoder_reconstructs_better_than_the_mean_image(ae_run, run_cli):
    """Measured: about 19 dB after 50 steps against 15 dB for the mean training image (the data's own baseline)."""
    root, _ = ae_run
    run = pipeline.open_run(root)
    test = torch.cat([b.x for b in run.dataset.batches("test", 250)])
    mean_image = torch.cat([b.x for b in run.dataset.batches("train", 250)]).mean(0)
    baseline = float((10 * torch.log10(1 / (test - mean_image).pow(2).flatten(1).mean(1))).mean())
    code, out, err = run_cli("eval", root, "eval.n_samples=8", "eval.metric_samples=8", "eval.train_classifier=false",
                             "eval.memorisation_reference=8")
    assert code == 0, err
    shown = json.loads(out[: out.rindex("}") + 1])  # then "wrote .../metrics.json"
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["family"] == "autoencoder"
    psnr = metrics["family_metrics"]["reconstruction"]["test_psnr_db"]
    assert shown["test reconstruction PSNR (dB)"] == pytest.approx(psnr, abs=1e-3)
    assert psnr > 17.0 and psnr > baseline + 2.5, (psnr, baseline)
    assert "likelihood" not in metrics  # the family claims none


def test_latent_diffusion_trains_and_samples_in_pixel_space_through_the_cli(ae_run, run_cli, tmp_path):
    ae_root, data = ae_run
    ae_before = load_tensors(ae_root / "model.safetensors")
    recipe = tmp_path / "ld.yaml"
    recipe.write_text(yaml.safe_dump({"name": "ld", "family": "diffusion", "data": data,
                                      "model": {**LD_MODEL, "latent_from": str(ae_root)},
                                      "train": {"steps": 6, "batch_size": 16, **QUIET}}))
    code, _, err = run_cli("train", recipe, "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    run_dir = tmp_path / "runs" / "ld"
    base = json.loads((run_dir / "base.json").read_text())
    assert base["path"] == str(ae_root) and len(base["sha256"]) == 16
    stored = load_tensors(run_dir / "model.safetensors")
    assert not any(k.startswith("autoencoder.") for k in stored) and float(stored["latent_scale"]) > 0
    code, _, err = run_cli("sample", run_dir, "--n", "5", "--out", tmp_path / "s.npz")
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as f:
        images = f[f.files[0]]
    assert images.shape[0] == 5 and 3 in images.shape[1:] and images.size == 5 * 3 * 32 * 32
    loaded = pipeline.open_run(run_dir)
    pixels = pipeline.generate(loaded, 4, seed=1)
    assert pixels.shape == (4, 3, 32, 32) and 0 <= float(pixels.min()) <= float(pixels.max()) <= 1
    assert pixels.std() > 0.01  # decoded, not a constant
    assert_same_weights(ae_before, load_tensors(ae_root / "model.safetensors"))
    assert_same_weights(ae_before, loaded.model.autoencoder.state_dict())  # frozen: the trained AE, untouched
    code, out, err = run_cli("eval", run_dir, "eval.n_samples=8", "eval.metric_samples=8",
                             "eval.train_classifier=false", "eval.memorisation_reference=8")
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "pixel-space likelihood" in metrics["likelihood"]["not_applicable"]  # said, with no figure
    assert metrics["memorisation"]["n_samples"] == 8  # pixel-space samples went through the image metrics


def test_latent_diffusion_resume_is_bit_identical_and_the_autoencoder_stays_frozen(ae_run, tmp_path):
    ae_root, data = ae_run
    cfg = latent_config(ae_root, data, steps=12, checkpoint_every=5, ema_decay=0.9, val_every=4)
    check_resume_is_bit_identical(cfg, tmp_path)  # weights (AE and latent scale included), EMA, optimizer state
    from test_trainer import make_trainer

    trainer = make_trainer(cfg, tmp_path / "again")
    ae = {k: v.clone() for k, v in trainer.model.autoencoder.state_dict().items()}
    scale = float(trainer.model.latent_scale)
    assert scale > 0
    assert all(not p.requires_grad for p in trainer.model.autoencoder.parameters())
    trainer.fit()
    assert_same_weights(ae, weights_of(trainer.model.autoencoder))
    assert float(trainer.model.latent_scale) == scale  # EMA and training leave the scale as calibrated


def test_a_changed_autoencoder_is_refused_when_the_latent_run_opens(ae_run, tmp_path):
    ae_root, data = ae_run
    copy = tmp_path / "ae-copy"
    shutil.copytree(ae_root, copy)
    run, _ = pipeline.train_config(latent_config(copy, data, steps=2), tmp_path / "runs")
    weights = load_tensors(copy / "model.safetensors")
    atomic_save_tensors(copy / "model.safetensors", {k: v + 0.01 for k, v in weights.items()})
    with pytest.raises(GenlabError, match="weights have changed since"):
        pipeline.open_run(run.root)


def test_a_wrong_latent_from_is_one_clear_error(ae_run, tmp_path, run_cli):
    ae_root, data = ae_run
    with pytest.raises(GenlabError, match="model.latent_from=.*run directory not found"):
        pipeline.train_config(latent_config(tmp_path / "nowhere", data), tmp_path / "runs")
    pixel = config_from_dict({"name": "px", "family": "diffusion", "data": data, "model": LD_MODEL,
                              "train": {"steps": 1, "batch_size": 16, **QUIET}})
    pixel_run, _ = pipeline.train_config(pixel, tmp_path / "runs")
    with pytest.raises(GenlabError, match="is a diffusion run; latent diffusion needs an autoencoder run"):
        pipeline.train_config(latent_config(pixel_run.root, data, name="ld2"), tmp_path / "runs")
    recipe = tmp_path / "small.yaml"
    recipe.write_text(yaml.safe_dump({"name": "ld3", "family": "diffusion", "data": {**data, "resize": 16},
                                      "model": {**LD_MODEL, "latent_from": str(ae_root)},
                                      "train": {"steps": 1, "batch_size": 16, **QUIET}}))
    code, _, err = run_cli("train", recipe, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(code, err, "was trained on 3x32x32 (CxHxW) images; this data is 3x16x16")
    assert not (tmp_path / "runs" / "ld3").exists()


def test_latent_runs_edit_in_latent_space_and_keep_the_known_pixels(ae_run, tmp_path):
    from genlab.modalities.image.edit import shape_mask

    ae_root, data = ae_run
    run, _ = pipeline.train_config(latent_config(ae_root, data, name="ld-edit"), tmp_path)
    model = pipeline.open_run(run.root).model
    x = torch.from_numpy(shapes(2, seed=5)).permute(0, 3, 1, 2).float() / 255
    known = shape_mask("box:8,8,20,24", (32, 32))
    cells = model.latent_mask(known)
    assert cells.shape == (1, 1, 8, 8) and float(cells.sum()) == 64 - 3 * 4  # x 8..20 -> cells 2..4, y 8..24 -> 2..5
    out = model.inpaint(x, known, steps=3, seed=0)
    keep = known.expand_as(x).bool()
    assert torch.equal(out[keep], x[keep]) and not torch.equal(out[~keep], x[~keep])
    assert torch.equal(model.img2img(x, 0.0), x)
    assert model.img2img(x, 0.5, steps=4).shape == x.shape
    x_t = model.invert(x, steps=4)
    assert x_t.shape == (2, *model.shape) and model.decode_from_noise(x_t, steps=4).shape == x.shape
