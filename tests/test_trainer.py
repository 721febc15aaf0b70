import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from genlab.core.errors import TrainingDiverged
from genlab.core.runs import RunPaths, load_tensors
from genlab.modalities import load_dataset
from genlab.models.vae import VAE
from genlab.pipeline import base_dir
from genlab.train.trainer import Trainer, build_model, data_spec, lr_factor


def make_trainer(cfg, root: Path) -> Trainer:
    dataset = load_dataset(cfg.data, base_dir(cfg), cfg.train.privacy)
    return Trainer(cfg, RunPaths(root), dataset, build_model(cfg, data_spec(dataset)))


def weights_of(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.mark.parametrize("family, extra", [
    ("vae", {}),
    ("gan", {"model": {"loss": "wgan-gp", "n_critic": 2, "spectral_norm": True}}),
    ("diffusion", {"model": {"prediction": "v", "min_snr_gamma": 5.0, "dropout": 0.1}}),
])
def test_resume_is_bit_identical(tmp_path, family, extra):
    train = {"steps": 12, "checkpoint_every": 5, "ema_decay": 0.9, "val_every": 4, "schedule": "cosine"}
    check_resume_is_bit_identical(tiny_config(family, train=train, **extra), tmp_path)


def check_resume_is_bit_identical(cfg, tmp_path):
    """Train 12 steps in one go, and with a crash right after the step-5 checkpoint then --resume: same state."""
    whole = make_trainer(cfg, tmp_path / "whole")
    whole.fit()
    # Interrupted: the process dies right after the checkpoint at step 5 is written.
    cut = make_trainer(cfg, tmp_path / "cut")
    save = cut.save_checkpoint

    def save_then_die():
        path = save()
        if cut.step == 5:
            raise KeyboardInterrupt
        return path

    cut.save_checkpoint = save_then_die
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    resumed = make_trainer(cfg, tmp_path / "cut")
    resumed.fit(resume=True)
    assert resumed.step == 12
    kept = sorted(p.name for p in (tmp_path / "whole" / "checkpoints").glob("step_*"))
    assert kept == ["step_00000010", "step_00000012"]  # keep_last=2
    assert_same_weights(weights_of(whole.model), weights_of(resumed.model))
    assert_same_weights(whole.ema.state_dict(), resumed.ema.state_dict())
    for name in whole.optimizers:
        sa, sb = whole.optimizers[name].state_dict(), resumed.optimizers[name].state_dict()
        for idx in sa["state"]:
            for key, value in sa["state"][idx].items():
                assert torch.equal(value, sb["state"][idx][key])


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    """A real `genlab train` process is SIGKILLed mid-run; `--resume` ends on the same bits as a clean run."""
    recipe = Path(__file__).parents[1] / "configs" / "digits-dcgan.yaml"
    args = ["train.steps=300", "train.checkpoint_every=20", "train.val_every=100", "train.threads=1",
            "model.generator_widths=[16,32]", "model.discriminator_widths=[16,32]"]
    env = {**os.environ, "GENLAB_QUIET": "1"}
    cmd = [sys.executable, "-m", "genlab.cli", "train", str(recipe), *args, "--runs-dir"]
    subprocess.run([*cmd, str(tmp_path / "clean")], check=True, env=env, capture_output=True)

    proc = subprocess.Popen([*cmd, str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = tmp_path / "killed" / "digits-dcgan" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step_00000060":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((latest.parent / latest.read_text().strip() / "state.json").read_text())["step"]
    assert 0 < killed_at < 300
    subprocess.run([*cmd, str(tmp_path / "killed"), "--resume"], check=True, env=env, capture_output=True)

    a = load_tensors(tmp_path / "clean" / "digits-dcgan" / "model.safetensors")
    b = load_tensors(tmp_path / "killed" / "digits-dcgan" / "model.safetensors")
    assert_same_weights(a, b)
    steps = [int(line.split(",")[0]) for line in
             (tmp_path / "killed" / "digits-dcgan" / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps)  # the log was rewound to the checkpoint, not duplicated


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config("vae", train={"steps": 10, "checkpoint_every": 2})
    trainer = make_trainer(cfg, tmp_path)
    original = VAE.phase_loss
    calls = {"n": 0}

    def flaky(self, phase, batch, noise):
        calls["n"] += 1
        loss, terms = original(self, phase, batch, noise)
        if calls["n"] == 5:
            terms["kl"] = terms["kl"] * float("nan")
        return loss, terms

    monkeypatch.setattr(VAE, "phase_loss", flaky)
    with pytest.raises(TrainingDiverged, match=r"step 5: loss term 'kl' of phase 'vae' is nan.*step_00000004"):
        trainer.fit()
    tensors, state = trainer.store.load(trainer.store.latest())
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())


def test_early_stopping_keeps_the_best_weights(tmp_path, monkeypatch):
    cfg = tiny_config("vae", train={"steps": 50, "val_every": 2, "early_stopping_metric": "neg_elbo",
                                    "patience": 2})
    trainer = make_trainer(cfg, tmp_path)
    scores = iter([5.0, 3.0, 4.0, 6.0, 1.0])
    snapshots = []

    def fake_validation():
        snapshots.append(weights_of(trainer.model))
        return {"neg_elbo": next(scores)}

    monkeypatch.setattr(trainer, "validation_metrics", fake_validation)
    summary = trainer.fit()
    assert summary["stop_reason"] == "early_stopping" and trainer.step == 8
    assert summary["best"]["step"] == 4
    assert_same_weights(load_tensors(tmp_path / "model.safetensors"), snapshots[1])


def test_ema_weights_are_what_gets_sampled(tmp_path):
    cfg = tiny_config("vae", train={"steps": 20, "ema_decay": 0.9})
    trainer = make_trainer(cfg, tmp_path)
    trainer.fit()
    final = load_tensors(tmp_path / "model.safetensors")
    assert_same_weights(final, trainer.ema.state_dict())
    live = trainer.model.state_dict()
    assert any(not torch.equal(final[k], live[k]) for k in final if final[k].is_floating_point())


def test_lr_schedule():
    cfg = tiny_config("vae", train={"steps": 100, "warmup_steps": 10, "schedule": "cosine", "min_lr_ratio": 0.1}).train
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.55)
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_phase_learning_rates_come_from_config(tmp_path):
    cfg = tiny_config("gan", train={"lr": 1e-3, "lr_by_phase": {"discriminator": 4e-4},
                                    "betas_by_phase": {"generator": [0.0, 0.9]}})
    trainer = make_trainer(cfg, tmp_path)
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(4e-4)
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3)
    assert tuple(trainer.optimizers["generator"].param_groups[0]["betas"]) == (0.0, 0.9)
