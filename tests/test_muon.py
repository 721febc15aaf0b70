"""Muon (train.optimizer=muon), the GPT block options of issue #21 and the wsd schedule."""

import math

import pytest
import torch
from conftest import tiny_config
from test_trainer import check_resume_is_bit_identical, make_trainer

from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.modalities import load_dataset
from genlab.nn.gpt import GPT, ReLU2
from genlab.train.distributed import native_bf16
from genlab.train.muon import Muon, muon_split, newton_schulz, ns_dtype_for
from genlab.train.trainer import build_model, lr_factor


@pytest.mark.parametrize("shape", [(64, 192), (192, 64), (128, 128 * 9), (40, 50)])
def test_newton_schulz_is_orthogonal_within_the_quintic_band(shape):
    """Five quintic steps put every singular value of a random matrix in about [0.68, 1.16] (measured: 0.682 to
    1.134 on these shapes); the singular vectors are g's own."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    o = newton_schulz(g)
    assert o.shape == g.shape
    s = torch.linalg.svdvals(o)
    assert 0.65 < float(s.min()) and float(s.max()) < 1.2, s.aminmax()
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    cos = (u.T @ o @ vh.T).diagonal()  # o = U diag(s') V^T: o's singular values sit on g's singular vectors
    assert torch.allclose(cos, s.sort(descending=True).values, atol=0.05) or float(cos.min()) > 0.6


@pytest.mark.parametrize("shape", [(64, 32), (48, 128)])
def test_newton_schulz_in_bf16_stays_in_the_band(shape):
    """The bf16 iteration (train.muon_ns_precision, auto on native-bf16 CPUs and CUDA) keeps the fp32 band within
    bf16's rounding, and agrees with the fp32 result to ~1e-2."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    o16 = newton_schulz(g, dtype=torch.bfloat16).float()
    s = torch.linalg.svdvals(o16)
    assert 0.6 < float(s.min()) and float(s.max()) < 1.25, s.aminmax()
    assert float((o16 - newton_schulz(g)).abs().max()) < 0.05


def test_ns_precision_choice():
    assert ns_dtype_for(torch.device("cpu"), "fp32") == torch.float32
    assert ns_dtype_for(torch.device("cpu"), "bf16") == torch.bfloat16
    native = native_bf16(torch.device("cpu"))
    assert ns_dtype_for(torch.device("cpu"), "auto") == (torch.bfloat16 if native else torch.float32)


def test_newton_schulz_leaves_tiny_singular_values_small_but_lifts_the_rest():
    """An ill-conditioned matrix (singular values 1e-3 .. 1): the quintic is not exact near zero (documented band)."""
    gen = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen))
    s = torch.linalg.svdvals(newton_schulz(u @ torch.diag(torch.logspace(-3, 0, 64)) @ v.T))
    assert float(s.max()) < 1.21 and float(s.min()) > 0.1
    assert float((s > 0.65).float().mean()) > 0.6


def gpt_config(tmp_path, **model):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be: that is the question.\n" * 40)
    return config_from_dict({"name": "g", "family": "gpt",
                             "data": {"source": "txt", "path": str(corpus), "block_size": 16},
                             "model": {"layers": 2, "heads": 2, "width": 16, **model},
                             "train": {"steps": 6, "batch_size": 8, "val_every": 0, "checkpoint_every": 0,
                                       "optimizer": "muon", "ema_decay": 0.0}})


@pytest.mark.parametrize("tie", [True, False])
def test_muon_takes_the_hidden_matrices_of_a_gpt(tmp_path, tie):
    cfg = gpt_config(tmp_path, tie_embeddings=tie)
    model = build_model(cfg, load_dataset(cfg.data).spec())
    muon, adam = muon_split(model, model.phases()[0].modules, model.muon_exclude)
    names = {id(p): n for n, p in model.named_parameters()}  # a tied tensor by its first name (tok_emb)
    muon_names = sorted(names[id(p)] for p in muon)
    expected = sorted(f"net.blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.0",
                                                                                "mlp.2"))
    assert muon_names == expected
    adam_names = {names[id(p)] for p in adam}
    assert "net.tok_emb.weight" in adam_names and "net.pos_emb.weight" in adam_names  # embeddings
    assert ("net.lm_head.weight" in adam_names) == (not tie)  # untied: the head by muon_exclude; tied: one tensor
    assert len(muon) + len(adam) == len(names)
    assert all(p.dim() < 2 for p in adam if names[id(p)] not in
               ("net.tok_emb.weight", "net.pos_emb.weight", "net.lm_head.weight"))


def test_muon_takes_the_flattened_conv_filters_of_a_vae():
    cfg = tiny_config("vae", train={"optimizer": "muon"})
    model = build_model(cfg, load_dataset(cfg.data).spec())
    muon, adam = muon_split(model, model.phases()[0].modules, model.muon_exclude)
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    expected = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in embedding_weights]
    assert [id(p) for p in muon] == [id(p) for p in expected]
    assert any(p.dim() == 4 for p in muon)  # conv filters, orthogonalised as (out, in*k*k)
    assert all(p.dim() < 2 or id(p) in embedding_weights for p in adam)


def test_muon_update_has_the_documented_rms_and_the_rest_is_adamw():
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(32, 96) * 0.02), torch.nn.Parameter(torch.zeros(96))
    opt = Muon([{"params": [w], "use_muon": True}, {"params": [b]}], lr=0.01, momentum=0.95)
    w0, b0 = w.detach().clone(), b.detach().clone()
    w.grad, b.grad = torch.randn(32, 96), torch.randn(96)
    opt.step()
    rms = float((w - w0).detach().pow(2).mean().sqrt())
    # RMS-matched to AdamW: 0.2 * lr times the quintic's singular values (about 0.8 on average: measured 0.81)
    assert 0.7 * 0.2 * 0.01 < rms < 1.0 * 0.2 * 0.01
    torch.testing.assert_close(b - b0, -0.01 * b.grad.sign(), atol=1e-6, rtol=1e-4)  # Adam's first step: lr*sign
    with pytest.raises(ValueError, match="matrices"):
        Muon([{"params": [b], "use_muon": True}])


def test_muon_optimizer_groups_in_the_trainer(tmp_path):
    cfg = gpt_config(tmp_path)
    cfg.train.lr, cfg.train.muon_lr, cfg.train.weight_decay = 3e-3, 2e-2, 0.1
    opt = make_trainer(cfg, tmp_path / "run").optimizers["lm"]
    assert isinstance(opt, Muon)
    muon = [g for g in opt.param_groups if g["use_muon"]]
    assert len(muon) == 1 and muon[0]["base_lr"] == 2e-2 and muon[0]["weight_decay"] == 0.1
    assert muon[0]["momentum"] == 0.95
    assert all(g["base_lr"] == 3e-3 for g in opt.param_groups if not g["use_muon"])


def test_resume_is_bit_identical_with_muon(tmp_path):
    train = {"steps": 12, "checkpoint_every": 5, "ema_decay": 0.9, "val_every": 4, "schedule": "wsd",
             "optimizer": "muon", "weight_decay": 0.05, "warmup_steps": 2}
    check_resume_is_bit_identical(tiny_config("vae", train=train), tmp_path)


def test_muon_under_fsdp_is_one_clear_error(tmp_path):
    cfg = gpt_config(tmp_path)
    cfg.train.fsdp = True
    with pytest.raises(GenlabError, match="muon.*fsdp"):
        make_trainer(cfg, tmp_path / "run")


def test_wsd_schedule():
    cfg = tiny_config("vae", train={"steps": 100, "warmup_steps": 10, "schedule": "wsd", "decay_fraction": 0.2,
                                    "min_lr_ratio": 0.1}).train
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == lr_factor(50, cfg) == lr_factor(79, cfg) == 1.0  # stable
    assert lr_factor(80, cfg) == pytest.approx(1.0)  # the decay's first step
    assert lr_factor(90, cfg) == pytest.approx(0.55)
    assert lr_factor(99, cfg) == pytest.approx(0.1 + 0.9 * 0.05)
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    cfg.decay_fraction = 0.0
    assert lr_factor(99, cfg) == 1.0
    with pytest.raises(GenlabError, match="decay_fraction"):
        tiny_config("vae", train={"schedule": "wsd", "decay_fraction": 1.5})


def tiny_gpt(**options):
    torch.manual_seed(0)
    return GPT(50, 32, layers=2, heads=4, dim=32, **options).eval()


def test_qk_norm_gives_unit_rms_queries_and_keys_per_head():
    model = tiny_gpt(qk_norm=True)
    seen = []
    attn = model.blocks[0].attn
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q, k))
        return original(q, k, v, **kw)

    idx = torch.randint(50, (2, 20), generator=torch.Generator().manual_seed(0))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        out = model(idx)
    q, k = seen[0]
    assert q.shape[1] == attn.heads
    for t in (q, k):
        torch.testing.assert_close(t.pow(2).mean(-1).sqrt(), torch.ones(t.shape[:-1]), atol=1e-4, rtol=0)
    assert not torch.allclose(out, tiny_gpt()(idx))


def test_logit_softcap_bounds_the_logits():
    idx = torch.randint(50, (2, 20), generator=torch.Generator().manual_seed(0))
    plain = tiny_gpt()
    with torch.no_grad():
        plain.lm_head.weight.mul_(400)  # logits in the hundreds
    capped = tiny_gpt(logit_softcap=5.0)
    capped.load_state_dict(plain.state_dict())
    with torch.no_grad():
        raw, out = plain(idx), capped(idx)
    assert float(raw.abs().max()) > 20 and float(out.abs().max()) <= 5.0
    torch.testing.assert_close(out, 5.0 * torch.tanh(raw / 5.0))
    assert torch.equal(tiny_gpt(logit_softcap=0.0)(idx), tiny_gpt()(idx))  # 0: off


def test_relu2_mlp_and_untied_head():
    model = tiny_gpt(activation="relu2", tie_embeddings=False)
    assert isinstance(model.blocks[0].mlp[1], ReLU2)
    x = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.equal(model.blocks[0].mlp[1](x), torch.tensor([0.0, 0.0, 9.0]))
    assert model.lm_head.weight.data_ptr() != model.tok_emb.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in tiny_gpt().parameters()) + 50 * 32


def test_zero_init_proj_starts_every_block_as_the_identity():
    model = tiny_gpt(zero_init_proj=True)
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp[2].weight.any()
        assert block.attn.qkv.weight.any()
    x = torch.randn(2, 5, 32)
    assert torch.equal(model.blocks[0](x, None, None, 0), x)  # zero biases too: the residual stream passes through
    # the default: GPT-2's depth-scaled init, 0.02 / sqrt(2 * layers)
    assert math.isclose(float(tiny_gpt().blocks[0].attn.proj.weight.detach().std()), 0.01, rel_tol=0.2)


def test_gpt_options_from_config(tmp_path):
    cfg = gpt_config(tmp_path, qk_norm=True, mlp_activation="relu2", tie_embeddings=False, zero_init_proj=True,
                     logit_softcap=30)
    net = build_model(cfg, load_dataset(cfg.data).spec()).net
    assert net.blocks[0].attn.qk_norm and isinstance(net.blocks[0].mlp[1], ReLU2) and net.logit_softcap == 30
    assert net.lm_head.weight is not net.tok_emb.weight and not net.blocks[1].attn.proj.weight.any()
    with pytest.raises(GenlabError, match="mlp_activation"):
        gpt_config(tmp_path, mlp_activation="swish")
