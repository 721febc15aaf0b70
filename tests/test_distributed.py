"""Data parallel training with torchrun on CPU (gloo): same weights as one process on the same global batch,
a killed multi-process run resumes (also at another world size), and every family trains under DDP."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from genlab.core.runs import load_tensors

CORPUS = ["The quick brown fox jumps over the lazy dog.", "To be, or not to be: that is the question.",
          "All that glitters is not gold.", "A stitch in time saves nine."]


@pytest.fixture
def gpt_recipe(tmp_path):
    """A tiny character GPT whose loss is deterministic (no dropout), so process counts can be compared."""
    corpus = tmp_path / "corpus"
    corpus.write_text("\n%\n".join(f"{CORPUS[i % 4]} #{i}" for i in range(60)) + "\n")
    recipe = tmp_path / "gpt.yaml"
    recipe.write_text(json.dumps({
        "name": "gpt", "family": "gpt",
        "data": {"source": "fortune", "path": str(corpus), "block_size": 16},
        "model": {"layers": 2, "heads": 2, "width": 16},
        "train": {"steps": 12, "batch_size": 8, "lr": 1e-2, "optimizer": "adamw", "weight_decay": 0.1,
                  "grad_clip": 1.0, "schedule": "cosine", "val_every": 6, "checkpoint_every": 4, "log_every": 2},
    }))
    return recipe


def genlab(*args, processes: int = 1, wait: bool = True):
    """`genlab ARGS` in a subprocess, under torchrun when processes > 1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENLAB_QUIET": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                 "-m", "genlab.cli"] if processes > 1 else [sys.executable, "-m", "genlab.cli"])
    cmd = [*launcher, *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def assert_close_weights(a, b, atol=1e-5):
    """Every weight, except the key third of attention's qkv bias: adding it shifts every score of a query by the
    same amount, which softmax ignores, so its gradient is zero but for rounding, and Adam turns that rounding
    into steps of lr in arbitrary directions (measured: 1.4e-5 apart after 12 steps on a CPU where the rest
    agree to 2e-7). Everything else must match."""
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if k.endswith("attn.qkv.bias"):
            third = x.numel() // 3
            x, y = torch.cat([x[:third], x[2 * third:]]), torch.cat([y[:third], y[2 * third:]])
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=k)


def test_two_processes_match_one_on_the_same_global_batch(tmp_path, gpt_recipe):
    genlab("train", gpt_recipe, "--runs-dir", tmp_path / "one")
    genlab("train", gpt_recipe, "--runs-dir", tmp_path / "two", processes=2)
    genlab("train", gpt_recipe, "train.accumulate=2", "--runs-dir", tmp_path / "acc")
    genlab("train", gpt_recipe, "train.fsdp=true", "--runs-dir", tmp_path / "fsdp", processes=2)
    genlab("train", gpt_recipe, "train.fsdp=true", "train.accumulate=2", "--runs-dir", tmp_path / "fsdp-acc",
           processes=2)
    one = load_tensors(tmp_path / "one" / "gpt" / "model.safetensors")
    assert_close_weights(one, load_tensors(tmp_path / "two" / "gpt" / "model.safetensors"))
    assert_close_weights(one, load_tensors(tmp_path / "acc" / "gpt" / "model.safetensors"))
    assert_close_weights(one, load_tensors(tmp_path / "fsdp" / "gpt" / "model.safetensors"))
    # sharded micro-batches reduce-scatter twice a step: one more rounding than the rest
    assert_close_weights(one, load_tensors(tmp_path / "fsdp-acc" / "gpt" / "model.safetensors"), atol=3e-5)
    summary = json.loads((tmp_path / "two" / "gpt" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 12
    log = (tmp_path / "two" / "gpt" / "log.csv").read_text().splitlines()
    assert len(log) == len((tmp_path / "one" / "gpt" / "log.csv").read_text().splitlines())  # rank 0 logs once


def test_killed_two_process_run_resumes_at_one_process(tmp_path, gpt_recipe):
    """SIGKILL a 2-process run after a checkpoint, resume it in one process: same weights as never stopped."""
    runs = tmp_path / "runs"
    args = ("train", gpt_recipe, "train.steps=40", "train.checkpoint_every=4", "--runs-dir", runs)
    proc = genlab(*args, processes=2, wait=False)
    latest = runs / "gpt" / "checkpoints" / "latest"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step_00000008":
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (runs / "gpt" / "model.safetensors").exists(), "the run finished before it could be killed"
    genlab(*args, "--resume")
    summary = json.loads((runs / "gpt" / "train_summary.json").read_text())
    assert summary["steps"] == 40 and "processes" not in summary
    genlab("train", gpt_recipe, "train.steps=40", "train.checkpoint_every=4", "--runs-dir", tmp_path / "whole")
    # Adam over 40 steps magnifies the rounding of averaged half-batch gradients; wrong batches or a lost
    # optimizer state would differ by orders of magnitude more
    assert_close_weights(load_tensors(tmp_path / "whole" / "gpt" / "model.safetensors"),
                         load_tensors(runs / "gpt" / "model.safetensors"), atol=1e-3)


@pytest.mark.parametrize("family, model", [
    ("gan", {"loss": "wgan-gp", "n_critic": 2}),
    ("vae", {}),
    ("diffusion", {}),
])
def test_every_family_trains_under_ddp(tmp_path, family, model):
    from conftest import tiny_config

    cfg = tiny_config(family, train={"steps": 4, "batch_size": 16, "val_every": 2, "checkpoint_every": 2},
                      model=model).to_dict()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(cfg))
    genlab("train", recipe, "--runs-dir", tmp_path, processes=2)
    summary = json.loads((tmp_path / cfg["name"] / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["processes"] == 2


def test_fsdp_checkpoint_resumes_without_fsdp(tmp_path, gpt_recipe):
    """A sharded run's checkpoint holds full tensors in the usual layout: one plain process continues it,
    accumulating two micro-batches for the same global batch."""
    runs, flat = tmp_path / "runs", "train.schedule=constant"  # the schedule must not depend on train.steps here
    genlab("train", gpt_recipe, flat, "train.steps=8", "train.fsdp=true", "--runs-dir", runs, processes=2)
    genlab("train", gpt_recipe, flat, "train.steps=12", "train.accumulate=2", "--runs-dir", runs, "--resume")
    genlab("train", gpt_recipe, flat, "--runs-dir", tmp_path / "whole")
    assert_close_weights(load_tensors(tmp_path / "whole" / "gpt" / "model.safetensors"),
                         load_tensors(runs / "gpt" / "model.safetensors"), atol=1e-4)


def test_fsdp_is_refused_where_it_does_not_apply(tmp_path):
    from conftest import tiny_config

    from genlab.core.errors import GenlabError
    from genlab.core.runs import RunPaths
    from genlab.modalities import load_dataset
    from genlab.train.distributed import World
    from genlab.train.trainer import Trainer, build_model

    for family in ("vae", "gan"):
        cfg = tiny_config(family, train={"fsdp": True, "ema_decay": 0.0})
        ds = load_dataset(cfg.data)
        with pytest.raises(GenlabError, match="fsdp"):
            Trainer(cfg, RunPaths(tmp_path / family), ds, build_model(cfg, ds.spec()), World())


def test_batch_must_divide_among_processes(tmp_path, gpt_recipe):
    from genlab.config import load_config
    from genlab.core.errors import GenlabError
    from genlab.core.runs import RunPaths
    from genlab.modalities import load_dataset
    from genlab.train.distributed import World
    from genlab.train.trainer import Trainer, build_model

    cfg = load_config(gpt_recipe, ["train.batch_size=6", "train.accumulate=4"])
    ds = load_dataset(cfg.data)
    with pytest.raises(GenlabError, match="divisible by processes x train.accumulate"):
        Trainer(cfg, RunPaths(tmp_path / "r"), ds, build_model(cfg, ds.spec()), World())


def test_device_and_backend_are_chosen_from_what_pytorch_sees(monkeypatch):
    """No GPU here: the GPU branch is checked with PyTorch's answers replaced (nccl is never started)."""
    from genlab.core.errors import GenlabError
    from genlab.train.distributed import backend_for, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(GenlabError, match="sees no GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda", 1)  # local rank -> this node's GPU
    assert resolve_device("cpu") == torch.device("cpu")
    assert backend_for(torch.device("cuda", 0)) == "nccl" and backend_for(torch.device("cpu")) == "gloo"


@pytest.mark.parametrize("family", ["vae", "gan", "diffusion"])
def test_every_family_moves_between_devices(family):
    """model.to(device) is what puts a family on a GPU; a method shadowing Module._apply once broke it."""
    from conftest import tiny_config

    from genlab.models.base import DataSpec
    from genlab.train.trainer import build_model

    cfg = tiny_config(family)
    model = build_model(cfg, DataSpec(1, 8, 8, 10)).to(torch.device("cpu")).double().float()
    assert model.device == torch.device("cpu")
    batch_images = model.sample(2, noise=torch.Generator().manual_seed(0))
    assert batch_images.shape == (2, 1, 8, 8)


def test_muon_two_processes_match_one(tmp_path, gpt_recipe):
    """DDP hands every process the whole all-reduced gradient, so Muon's orthogonalised update is the same. In fp32:
    bf16 Newton-Schulz (auto on CPUs with native bf16) rounds the update to ~1e-2 relative, so the all-reduce's
    different summation order shows up there far above this comparison's tolerance."""
    muon = ["train.optimizer=muon", "train.schedule=wsd", "train.muon_ns_precision=fp32"]
    genlab("train", gpt_recipe, *muon, "--runs-dir", tmp_path / "one")
    genlab("train", gpt_recipe, *muon, "--runs-dir", tmp_path / "two", processes=2)
    assert_close_weights(load_tensors(tmp_path / "one" / "gpt" / "model.safetensors"),
                         load_tensors(tmp_path / "two" / "gpt" / "model.safetensors"))
