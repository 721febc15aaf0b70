"""train.privacy: DP-SGD for table families, a public-only preprocessing, and the noisy-marginals baseline."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from genlab.config import PrivacyConfig, load_config
from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.modalities.table.schema import infer_schema
from genlab.pipeline import train_config
from genlab.train.privacy import PrivacyEngine


def small_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(0, 1, n), "age": rng.integers(18, 90, n),
                         "city": rng.choice(["Paris", "Lyon", "Nice"], n), "member": rng.choice(["yes", "no"], n)})


def private_recipe(tmp_path, family: str = "tvae", public_schema: bool = True, steps: int = 12, **train):
    """A tiny private run; the schema file is written from the data here, then declared public (the test's word)."""
    df = small_table()
    df.to_csv(tmp_path / "t.csv", index=False)
    schema = infer_schema(df)
    schema.public = public_schema
    schema.save(tmp_path / "schema.yaml")
    model = ({"latent_dim": 8, "hidden": [16, 16]} if family == "tvae" else
             {"latent_dim": 8, "generator_widths": [16], "discriminator_widths": [16], "pac": 1})
    raw = {"name": f"dp-{family}", "family": family,
           "data": {"source": "table", "path": str(tmp_path / "t.csv"), "schema": str(tmp_path / "schema.yaml")},
           "model": model,
           "train": {"steps": steps, "batch_size": 24, "lr": 1e-3, "val_every": 0, "checkpoint_every": 0,
                     "log_every": 5, "threads": 1,
                     "privacy": {"epsilon": 3.0, "delta": 1e-4, "max_grad_norm": 1.0}, **train}}
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    return tmp_path / "r.yaml"


def test_spent_epsilon_agrees_with_opacus_accountant(tmp_path):
    from opacus.accountants import RDPAccountant

    _, summary = train_config(load_config(private_recipe(tmp_path)), tmp_path / "runs")
    dp = summary["privacy"]
    train_rows = 243  # 300 rows less the validation and test splits
    assert dp["sample_rate"] == pytest.approx(24 / train_rows) and dp["private_steps"] == 12
    opacus = RDPAccountant()
    for _ in range(12):
        opacus.step(noise_multiplier=dp["noise_multiplier"], sample_rate=dp["sample_rate"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = opacus.get_epsilon(delta=1e-4)
    assert dp["epsilon"] == pytest.approx(expected, abs=1e-3)
    assert 0.9 * 3.0 <= dp["epsilon"] <= 3.0 + 0.02  # the noise was solved for the planned steps


def test_each_rows_gradient_is_clipped_then_noised():
    """With the noise off, the step's gradient is the sum of per-row gradients each clipped to C, over B."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 1)
    x = torch.randn(8, 3) * torch.tensor([[10.0], [0.01], [5], [0.02], [3], [1], [0.5], [20]])
    engine = PrivacyEngine(PrivacyConfig(epsilon=1.0, max_grad_norm=0.5), 0.1, 10, expected_batch=8.0, seed=0)
    engine.noise_multiplier = 0.0
    params = list(layer.parameters())

    def loss_of(rows: Batch):
        return layer(rows.x).pow(2).mean(), {}

    engine.step(params, Batch(x, None), loss_of)
    expected = [torch.zeros_like(p) for p in params]
    norms = []
    for i in range(8):
        grads = torch.autograd.grad(loss_of(Batch(x[i:i + 1], None))[0], params)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        norms.append(float(norm))
        clipped = [g * min(1.0, 0.5 / (float(norm) + 1e-6)) for g in grads]
        assert float(torch.sqrt(sum(c.pow(2).sum() for c in clipped))) <= 0.5 + 1e-6
        expected = [e + c for e, c in zip(expected, clipped, strict=True)]
    assert max(norms) > 0.5 > min(norms)  # some rows clipped, some not
    for p, e in zip(params, expected, strict=True):
        assert torch.allclose(p.grad, e / 8.0, atol=1e-6)
    # the noise: standard deviation noise_multiplier * C before the division by the expected batch
    engine.noise_multiplier = 2.0
    layer.zero_grad()
    big = nn.Parameter(torch.zeros(20000))
    engine.step([big], Batch(torch.zeros(0, 3), None), loss_of)
    assert float(big.grad.std()) * 8.0 == pytest.approx(2.0 * 0.5, rel=0.03)


def test_private_run_never_fits_the_mixture(tmp_path, monkeypatch):
    from genlab.modalities.table import transform

    def forbidden(*args, **kwargs):
        raise AssertionError("a private run fitted the Gaussian mixture on private rows")

    monkeypatch.setattr(transform, "fit_modes", forbidden)
    monkeypatch.setattr(transform.TableTransformer, "fit", classmethod(forbidden))
    run, summary = train_config(load_config(private_recipe(tmp_path, steps=3)), tmp_path / "runs")
    saved = json.loads((run.root / "transform.json").read_text())
    assert all(len(m["means"]) == 1 for m in saved["modes"].values())  # min-max on the public bounds
    assert summary["privacy"]["epsilon"] > 0


def test_inferred_or_unconfirmed_schema_is_refused_in_one_line(tmp_path):
    cfg = load_config(private_recipe(tmp_path, public_schema=False))
    with pytest.raises(GenlabError) as err:
        train_config(cfg, tmp_path / "runs")
    assert "public" in str(err.value) and "\n" not in str(err.value)
    cfg.data.schema = None  # inferred from the rows
    with pytest.raises(GenlabError) as err:
        train_config(cfg, tmp_path / "runs")
    assert "train.privacy.public_schema=true" in str(err.value) and "\n" not in str(err.value)
    cfg.train.privacy.public_schema = True  # the user's word that the inferred bounds are public
    train_config(cfg, tmp_path / "runs")


def test_balance_and_packed_critic_are_refused(tmp_path):
    cfg = load_config(private_recipe(tmp_path, family="ctgan"))
    cfg.data.balance = True
    with pytest.raises(GenlabError, match="data.balance"):
        train_config(cfg, tmp_path / "runs")
    cfg.data.balance, cfg.model.pac = False, 4
    with pytest.raises(GenlabError, match="model.pac=1"):
        train_config(cfg, tmp_path / "runs")


@pytest.mark.parametrize("family", ["tvae", "ctgan"])
def test_private_run_resumes_bit_identically_with_its_accountant(tmp_path, family):
    from test_trainer import check_resume_is_bit_identical

    cfg = load_config(private_recipe(tmp_path, family=family, checkpoint_every=5, val_every=4, ema_decay=0.9,
                                     keep_last=2))
    check_resume_is_bit_identical(cfg, tmp_path)
    whole = json.loads((tmp_path / "whole" / "train_summary.json").read_text())["privacy"]
    resumed = json.loads((tmp_path / "cut" / "train_summary.json").read_text())["privacy"]
    steps = 12 * (cfg.model.n_critic if family == "ctgan" else 1)
    assert whole == resumed and whole["private_steps"] == steps


def test_private_eval_reports_the_spent_epsilon(tmp_path):
    from genlab.pipeline import evaluate_run, open_run

    run, summary = train_config(load_config(private_recipe(tmp_path, steps=3)), tmp_path / "runs")
    metrics = evaluate_run(open_run(run.root))
    assert metrics["differential_privacy"]["epsilon"] == summary["privacy"]["epsilon"]
    assert "Differential Privacy" in (run.root / "table_report.html").read_text()


def test_noisy_marginals_noise_scale_matches_epsilon():
    from genlab.modalities.table.marginals import noisy_marginals, sample_marginals

    df = small_table(2000)
    schema = infer_schema(df)
    m = noisy_marginals(df, schema, epsilon=2.0, bins=10)
    assert m["laplace_scale"] == pytest.approx(4 / 2.0)  # 4 columns, one count each per row
    # the noise actually added to the counts: Laplace(b) has mean absolute value b
    true = np.bincount(pd.Categorical(df["city"], categories=schema["city"].categories).codes, minlength=3)
    noise = np.concatenate([noisy_marginals(df, schema, epsilon=2.0, bins=10, seed=s)["noisy_counts"]["city"] - true
                            for s in range(2000)])
    assert np.abs(noise).mean() == pytest.approx(2.0, rel=0.05) and abs(noise.mean()) < 0.1
    rows = sample_marginals(m, schema, 500, seed=1)
    assert len(rows) == 500 and rows["age"].between(18, 89).all() and set(rows["city"]) <= {"Paris", "Lyon", "Nice"}
    assert abs((rows["member"] == "yes").mean() - (df["member"] == "yes").mean()) < 0.1


def test_inferred_schema_sees_training_rows_only(tmp_path):
    """A category and an extreme value that only held-out rows have stay out of the schema; encoding still works."""
    from genlab.config import DataConfig
    from genlab.core.splits import make_splits
    from genlab.modalities.table.dataset import load_table_dataset

    df = small_table(200)
    held = make_splits(len(df), 0, 0.1, 0.1, 0)["test"].numpy()
    df.loc[held[0], "city"], df.loc[held[1], "x"] = "Atlantis", 1e6
    df.to_csv(tmp_path / "t.csv", index=False)
    ds = load_table_dataset(DataConfig(source="table", path=str(tmp_path / "t.csv")))
    assert "Atlantis" not in ds.schema["city"].categories and ds.schema["x"].maximum < 10
    assert ds.schema.rows == ds.splits["train"].numel()
    city = [s for s in ds.transformer.spans()].index(next(s for s in ds.transformer.spans() if s.column == "city"))
    start = sum(s.width for s in ds.transformer.spans()[:city])
    assert float(ds.encoded[held[0], start:start + 3].sum()) == 0.0  # the unseen category: an all-zero block


def test_ctgan_generator_never_sees_a_training_row(tmp_path, monkeypatch):
    """The generator is post-processing only if it gets no row: every batch of its phase is zeros."""
    from genlab.models.ctgan import CTGAN

    seen = []
    original = CTGAN.phase_loss

    def spy(self, phase, batch, noise):
        if phase == "generator":
            seen.append(float(batch.x.abs().sum()))
        return original(self, phase, batch, noise)

    monkeypatch.setattr(CTGAN, "phase_loss", spy)
    _, summary = train_config(load_config(private_recipe(tmp_path, family="ctgan", steps=3)), tmp_path / "runs")
    assert len(seen) == 3 and set(seen) == {0.0} and summary["privacy"]["private_steps"] == 3


def test_privacy_on_other_data_is_refused(tmp_path):
    cfg = load_config(None, ["family=vae", "train.privacy.epsilon=1"])
    with pytest.raises(GenlabError, match="train.privacy trains table families"):
        train_config(cfg, tmp_path / "runs")
