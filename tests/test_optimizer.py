"""Trainer details from the modality issue: weight-decay scope, phase names checked, the global RNG left alone."""

import pytest
import torch
from conftest import tiny_config

from genlab.core.errors import GenlabError
from genlab.modalities import load_dataset
from genlab.train.trainer import Trainer, build_model, decay_groups


def test_matrices_scope_decays_only_parameters_of_two_or_more_dimensions():
    cfg = tiny_config("gan")
    model = build_model(cfg, load_dataset(cfg.data).spec())
    phase = model.phases()[0]
    everything, none = decay_groups(phase, 0.1, "all")
    assert len(everything["params"]) == len(phase.parameters()) and not none["params"]
    decayed, kept = decay_groups(phase, 0.1, "matrices")
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in kept["params"])
    assert kept["params"] and len(decayed["params"]) + len(kept["params"]) == len(phase.parameters())


def test_an_unknown_phase_in_lr_by_phase_is_an_error(tmp_path):
    cfg = tiny_config("gan", train={"lr_by_phase": {"critic": 1e-4}})
    dataset = load_dataset(cfg.data)
    from genlab.core.runs import RunPaths

    with pytest.raises(GenlabError, match="train.lr_by_phase names phase 'critic'.*discriminator"):
        Trainer(cfg, RunPaths(tmp_path / "r"), dataset, build_model(cfg, dataset.spec()))


def test_building_a_model_leaves_the_global_rng_alone():
    cfg = tiny_config("vae")
    spec = load_dataset(cfg.data).spec()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(cfg, spec)
    assert torch.equal(torch.rand(3), expected)  # the process-wide stream continues as if nothing happened
    b = build_model(cfg, spec)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
