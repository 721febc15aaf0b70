"""The CLI end to end on digits, and every bad input ending in one line, exit 2, no traceback."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

RECIPES = Path(__file__).parents[1] / "configs"
SMALL = ["train.steps=40", "train.val_every=20", "train.checkpoint_every=20", "eval.iwae_k=50",
         "eval.iwae_images=40", "eval.n_samples=100", "model.widths=[8,16]"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """One small conditional VAE run on digits, trained through the CLI (shared by the tests below)."""
    import subprocess
    import sys

    runs = tmp_path_factory.mktemp("runs")
    subprocess.run([sys.executable, "-m", "genlab.cli", "train", str(RECIPES / "digits-vae.yaml"), *SMALL,
                    "--runs-dir", str(runs)], check=True, capture_output=True)
    return runs / "digits-vae"


def test_train_writes_a_complete_run_directory(vae_run):
    for name in ("config.yaml", "dataset.json", "model.safetensors", "log.csv", "train_summary.json"):
        assert (vae_run / name).is_file(), name
    assert (vae_run / "checkpoints" / "latest").is_file()
    assert any((vae_run / "tensorboard").iterdir())
    dataset = json.loads((vae_run / "dataset.json").read_text())
    assert len(dataset["fingerprint"]) == 16 and dataset["num_images"] == 1797
    log = (vae_run / "log.csv").read_text()
    assert "train,neg_elbo" in log and "val,neg_elbo" in log


def test_sample_png_and_npz_are_reproducible(vae_run, tmp_path, run_cli):
    code, out, err = run_cli("sample", vae_run, "--n", "12", "--label", "3", "--seed", "7", "--out", tmp_path / "a.npz")
    assert code == 0, err
    run_cli("sample", vae_run, "--n", "12", "--label", "3", "--seed", "7", "--out", tmp_path / "b.npz")
    run_cli("sample", vae_run, "--n", "12", "--label", "3", "--seed", "8", "--out", tmp_path / "c.npz")
    a, b, c = (np.load(tmp_path / f"{k}.npz")["images"] for k in "abc")
    assert a.shape == (12, 1, 8, 8) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    code, _, err = run_cli("sample", vae_run, "--n", "16", "--out", tmp_path / "grid.png")
    assert code == 0, err
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_and_report(vae_run, run_cli):
    code, out, err = run_cli("eval", vae_run)
    assert code == 0, err
    metrics = json.loads((vae_run / "metrics.json").read_text())
    lk = metrics["likelihood"]
    assert lk["iwae_k"] == 50 and lk["iwae_images"] == 40
    assert lk["test_iwae_nats"] >= lk["test_elbo_same_images_nats"]
    agreement = metrics["image"]["label_agreement"]  # the digits VAE is class-conditional
    assert agreement["n"] == 100 and 0 <= agreement["accuracy"] <= 1 and len(agreement["per_class"]) == 10
    memo = metrics["memorisation"]
    assert memo["n_samples"] == 100 and memo["copies"] >= 0 and memo["test_to_train_median"] > 0
    code, out, err = run_cli("report", vae_run)
    assert code == 0, err
    html = (vae_run / "report.html").read_text()
    assert out.strip().endswith("report.html")
    assert html.count("<img") >= 3  # curves, samples, closest-to-train strip (+ by-class)
    assert (vae_run / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "test_iwae_nats" in html and "Resolved config" in html and "fingerprint" in html


def test_gan_through_the_cli(tmp_path, run_cli):
    args = ["train", RECIPES / "digits-dcgan.yaml", "train.steps=10", "train.val_every=5",
            "model.generator_widths=[8,16]", "model.discriminator_widths=[8,16]", "eval.n_samples=50",
            "--runs-dir", tmp_path]
    code, out, err = run_cli(*args)
    assert code == 0, err
    run = tmp_path / "digits-dcgan"
    code, _, err = run_cli("eval", run)
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert "likelihood" not in metrics and metrics["memorisation"]["n_samples"] == 50
    code, _, err = run_cli(*args)
    assert_one_line_error(code, err, "already exists", "--resume", "--overwrite")
    code, _, err = run_cli(*args, "--overwrite")
    assert code == 0, err


def test_bad_inputs_end_in_one_line(tmp_path, run_cli, vae_run):
    cases = [
        (("train", tmp_path / "missing.yaml"), ["config file not found"]),
        (("train", RECIPES / "digits-vae.yaml", "train.stpes=5"), ["unknown config key 'train.stpes'", "train.steps"]),
        (("train", RECIPES / "digits-vae.yaml", "data.source=idx", f"data.path={tmp_path}/nope"),
         ["data path not found"]),
        (("sample", tmp_path, "--out", tmp_path / "x.png"), ["not a genlab run"]),
        (("sample", tmp_path / "nope", "--out", tmp_path / "x.png"), ["run directory not found"]),
        (("sample", vae_run, "--out", tmp_path / "x.jpg"), ["--out must end in .png or .npz"]),
        (("sample", vae_run, "--label", "12", "--out", tmp_path / "x.png"), ["label must be in 0..9"]),
        (("eval", tmp_path / "nope"), ["run directory not found"]),
        (("train", tmp_path), ["is a directory", "genlab train --help"]),
        (("sample", vae_run), ["--out FILE.png or FILE.npz is required"]),
        (("frobnicate",), ["No such command 'frobnicate'"]),
        (("sample", vae_run, "--n", "0", "--out", tmp_path / "x.png"), ["--n must be between 1 and 100,000"]),
        (("sample", vae_run, "--n", "10000000", "--out", tmp_path / "x.npz"), ["--n must be between"]),
        (("report", tmp_path), ["not a genlab run"]),
    ]
    for args, needles in cases:
        code, _, err = run_cli(*args, "--runs-dir", tmp_path) if args[0] == "train" else run_cli(*args)
        assert_one_line_error(code, err, *needles)


def test_corrupt_weights_are_one_line(tmp_path, run_cli, vae_run):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(vae_run, copy)
    (copy / "model.safetensors").write_bytes(b"\x00" * 20)
    code, _, err = run_cli("sample", copy, "--out", tmp_path / "x.png")
    assert_one_line_error(code, err, "model.safetensors", "not a readable safetensors file")


def test_bad_data_files_through_the_cli(tmp_path, run_cli):
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    code, _, err = run_cli("train", RECIPES / "fmnist-vae.yaml", f"data.path={tmp_path}", "--runs-dir", tmp_path)
    assert_one_line_error(code, err, "train-images-idx3-ubyte.gz", "gzip")
    np.savez(tmp_path / "d.npz", images=np.zeros((5, 4, 4), np.uint8), labels=np.zeros(4, np.int64))
    code, _, err = run_cli("train", RECIPES / "digits-vae.yaml", "data.source=npz", f"data.path={tmp_path}/d.npz",
                           "--runs-dir", tmp_path)
    assert_one_line_error(code, err, "4 labels for 5 images")


def test_unconditional_model_refuses_a_label(tmp_path, run_cli):
    code, _, err = run_cli("train", RECIPES / "digits-vae.yaml", "model.conditional=false", "train.steps=3",
                           "model.widths=[4,8]", "--runs-dir", tmp_path)
    assert code == 0, err
    code, _, err = run_cli("sample", tmp_path / "digits-vae", "--label", "1", "--out", tmp_path / "x.png")
    assert_one_line_error(code, err, "not class-conditional")


def test_describe_prints_the_dataset(run_cli):
    code, out, err = run_cli("describe", RECIPES / "digits-vae.yaml")
    assert code == 0, err
    desc = json.loads(out)
    assert desc["num_images"] == 1797 and desc["shape_chw"] == [1, 8, 8]
    assert sum(desc["splits"].values()) == 1797 and len(desc["classes"]) == 10


def test_diffusion_through_the_cli(tmp_path, run_cli, vae_run):
    args = ["train", RECIPES / "digits-ddpm.yaml", "train.steps=12", "train.val_every=6", "train.checkpoint_every=6",
            "model.base_channels=8", "model.timesteps=100", "eval.vlb_steps=10", "eval.vlb_images=40",
            "eval.n_samples=50", "eval.metric_samples=100", "--runs-dir", tmp_path]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "with EMA" in out  # EMA is the family's default
    run = tmp_path / "digits-ddpm"
    for extra in ([], ["--steps", "3", "--guidance", "3", "--label", "4"], ["--sampler", "ddim", "--eta", "0"],
                  ["--sampler", "ddpm", "--steps", "8", "--guidance", "0"]):
        code, _, err = run_cli("sample", run, "--n", "6", *extra, "--out", tmp_path / "s.npz")
        assert code == 0, (extra, err)
        assert np.load(tmp_path / "s.npz")["images"].shape == (6, 1, 8, 8)
    code, out, err = run_cli("eval", run)
    assert code == 0, err
    lk = json.loads((run / "metrics.json").read_text())["likelihood"]
    assert lk["vlb_steps"] == 10 and lk["vlb_images"] == 40 and lk["test_bits_per_dim"] > 0
    assert lk["test_vlb_small_variance_nats"] < 0 and lk["test_vlb_large_variance_nats"] < 0
    assert "test_bits_per_dim" in out
    cases = [
        (("sample", run, "--steps", "101", "--out", tmp_path / "x.png"), ["--steps must be between 1 and", "100"]),
        (("sample", run, "--steps", "0", "--out", tmp_path / "x.png"), ["--steps"]),
        (("sample", run, "--guidance", "-1", "--out", tmp_path / "x.png"), ["--guidance must be >= 0"]),
        (("sample", run, "--sampler", "euler", "--out", tmp_path / "x.png"), ["--sampler"]),
        (("sample", vae_run, "--steps", "5", "--out", tmp_path / "x.png"), ["--steps does not apply to the vae"]),
        (("sample", vae_run, "--guidance", "2", "--out", tmp_path / "x.png"), ["--guidance does not apply"]),
        (("train", RECIPES / "digits-ddpm.yaml", "model.sampler=euler"), ["model.sampler", "dpm++2m"]),
        (("train", RECIPES / "digits-ddpm.yaml", "model.patch_size=3"), ["patch_size=3 must divide"]),
        (("train", RECIPES / "digits-ddpm.yaml", "model.label_dropout=1.5"), ["label_dropout"]),
    ]
    for case, needles in cases:
        code, _, err = run_cli(*case, "--runs-dir", tmp_path / "bad") if case[0] == "train" else run_cli(*case)
        assert_one_line_error(code, err, *needles)
