"""LoRA and full fine-tuning: genlab's own GPT and a tiny random GPT-2 saved locally with `transformers` (no hub)."""

import json
import math

import pytest
import torch
from conftest import assert_one_line_error
from test_trainer import check_resume_is_bit_identical

from genlab.config import LoraConfig, config_from_dict
from genlab.core.errors import GenlabError
from genlab.core.runs import load_tensors
from genlab.modalities import load_dataset
from genlab.modalities.text.tokenizers import BPETokenizer
from genlab.pipeline import base_dir, generate_text, open_run, train_config
from genlab.train.trainer import build_model

ENGLISH = ["The quick brown fox jumps over the lazy dog.", "To be, or not to be: that is the question.",
           "All that glitters is not gold.", "A stitch in time saves nine."]
POEMS = ["床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。",
         "春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。", "千山鸟飞绝，万径人踪灭。\n孤舟蓑笠翁，独钓寒江雪。"]


def fortune_file(path, docs):
    path.write_text("\n%\n".join(docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpora(tmp_path):
    """An English corpus to pretrain on and a Chinese one to fine-tune on (distinct characters)."""
    return (fortune_file(tmp_path / "english", [f"{ENGLISH[i % 4]} #{i}" for i in range(80)]),
            fortune_file(tmp_path / "poems", [f"{POEMS[i % 4]} {i}" for i in range(40)]))


@pytest.fixture
def tiny_gpt2(tmp_path, corpora):
    """A random 2-layer GPT-2 with a byte-level BPE tokenizer, written by save_pretrained as on any disk."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "tiny-gpt2"
    folder.mkdir()
    docs = corpora[0].read_text(encoding="utf-8").split("\n%\n") + POEMS
    tok = BPETokenizer.train(docs, 400)
    tok.save(folder)
    config = GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tok.eot_id, eos_token_id=tok.eot_id,
                        initializer_range=0.2)  # logits that can move: the frozen embeddings are not tiny
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def recipe(tmp_path, corpus, name, **train):
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({
        "name": name, "data": {"source": "fortune", "path": str(corpus), "block_size": 32},
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "train": {"steps": 40, "batch_size": 8, "lr": 1e-2, "val_every": 20, "checkpoint_every": 20, **train},
    }))
    return path


def pretrain(tmp_path, corpora):
    """A small character GPT on English whose vocabulary also covers the poems (data.vocab_from)."""
    cfg = config_from_dict({
        "name": "base", "family": "gpt",
        "data": {"source": "fortune", "path": str(corpora[0]), "block_size": 32, "vocab_from": [str(corpora[1])]},
        "model": {"layers": 2, "heads": 2, "width": 32},
        "train": {"steps": 30, "batch_size": 8, "lr": 1e-2, "val_every": 30},
    })
    run, _ = train_config(cfg, tmp_path / "runs")
    return run.root


def perturb_adapters(model):
    """LoRA starts as the identity (B = 0); give B values so merging has something to fold in."""
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)


@pytest.mark.parametrize("kind", ["gpt", "hf"])
def test_lora_trains_only_adapters_and_merges_exactly(tmp_path, corpora, tiny_gpt2, kind):
    model_cfg = {"layers": 2, "heads": 2, "width": 32} if kind == "gpt" else {"path": str(tiny_gpt2)}
    data = {"source": "fortune", "path": str(corpora[1]), "block_size": 32,
            "tokenizer": "pretrained" if kind == "hf" else "char"}
    cfg = config_from_dict({"family": kind, "data": data, "model": model_cfg, "lora": {"rank": 4}})
    ds = load_dataset(cfg.data, base_dir(cfg))
    model = build_model(cfg, ds.spec())
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_A" in n or "lora_B" in n for n in names)
    defaults = ("attn.qkv", "attn.proj") if kind == "gpt" else ("attn.c_attn",)  # ours; PEFT's for GPT-2
    layers = {n.split(".lora_")[0] for n in names}
    assert {next(d for d in defaults if layer.endswith(d)) for layer in layers} == set(defaults)
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trained < 0.2 * total  # tiny models: the share is large; the recipes report theirs
    batch = next(iter(ds.validation_batches(4)))
    model.train()
    model.phase_loss("lm", batch, torch.Generator())[0].backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (n in names), n  # gradients reach the adapters and nothing else
    assert set(model.saved_state()) == names  # a run stores only the adapters

    perturb_adapters(model)
    model.eval()
    x = batch.x[:, :-1]
    with torch.no_grad():
        adapted = model.net(x)
        model.merge_lora()
        merged = model.net(x)
    assert not model.adapted and all(p.requires_grad for p in model.parameters())
    assert not any("lora" in n for n in model.state_dict())
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)
    fresh = build_model(config_from_dict({**cfg.to_dict(), "lora": {"rank": 0}}), ds.spec())
    with torch.no_grad():
        assert (fresh.net(x) - merged).abs().max() > 1e-3  # the merge changed the weights


def test_finetune_own_gpt_end_to_end(tmp_path, corpora, run_cli):
    base = pretrain(tmp_path, corpora)
    code, out, err = run_cli("finetune", base, recipe(tmp_path, corpora[1], "poems-lora"),
                             "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    assert "trained" in out and "before" in out
    run = tmp_path / "runs" / "poems-lora"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["trainable_parameters"] < 0.2 * summary["parameters"]
    # the start varies with the base's initialisation (4.8-8.5 nats over seeds); the tuned loss ends below a
    # uniform guess over the vocabulary either way
    vocab = len(json.loads((base / "tokenizer.json").read_text())["chars"])
    assert summary["validation"]["loss"] < min(summary["validation_at_start"]["loss"] - 0.1, math.log(vocab))
    saved = load_tensors(run / "model.safetensors")
    assert saved and all("lora_" in k for k in saved)  # adapters only
    assert json.loads((run / "base.json").read_text())["path"] == str(base.resolve())
    assert (run / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()

    lora_text = generate_text(open_run(run), "床前", n=2, seed=3, max_new_tokens=20, temperature=0.8)
    code, out, err = run_cli("merge", run, tmp_path / "merged")
    assert code == 0, err
    assert not any("lora" in k for k in load_tensors(tmp_path / "merged" / "model.safetensors"))
    merged_text = generate_text(open_run(tmp_path / "merged"), "床前", n=2, seed=3, max_new_tokens=20,
                                temperature=0.8)
    assert merged_text == lora_text
    code, out, err = run_cli("eval", tmp_path / "merged")
    assert code == 0, err

    # the base changes under a finished adapter: refused, never silently wrong
    (base / "model.safetensors").write_bytes((base / "model.safetensors").read_bytes()[:-8] + b"\0" * 8)
    code, out, err = run_cli("sample", run, "--prompt", "床")
    assert_one_line_error(code, err, "changed")


def test_finetune_hugging_face_model_end_to_end(tmp_path, corpora, tiny_gpt2, run_cli):
    code, out, err = run_cli("finetune", tiny_gpt2, recipe(tmp_path, corpora[1], "gpt2-lora"),
                             "lora.targets=[c_attn, c_proj, c_fc]", "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    run = tmp_path / "runs" / "gpt2-lora"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["validation"]["loss"] < summary["validation_at_start"]["loss"] - 0.5
    saved = load_tensors(run / "model.safetensors")
    assert all("lora_" in k for k in saved) and any("c_fc" in k for k in saved)
    code, out, err = run_cli("sample", run, "--prompt", "床前", "--max-tokens", "8", "--temperature", "0")
    assert code == 0, err
    code, out, err = run_cli("eval", run)
    assert code == 0, err
    assert "perplexity" in out
    code, out, err = run_cli("merge", run, tmp_path / "merged")
    assert code == 0, err
    a = generate_text(open_run(run), "白日", seed=0, max_new_tokens=12, temperature=0)
    b = generate_text(open_run(tmp_path / "merged"), "白日", seed=0, max_new_tokens=12, temperature=0)
    assert a == b


def test_full_finetune_trains_every_weight(tmp_path, corpora, tiny_gpt2, run_cli):
    code, out, err = run_cli("finetune", tiny_gpt2, recipe(tmp_path, corpora[1], "full", steps=10),
                             "--full", "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "full" / "train_summary.json").read_text())
    assert summary["trainable_parameters"] == summary["parameters"]


def test_lora_run_resumes_bit_identically(tmp_path, corpora):
    base = pretrain(tmp_path, corpora)
    cfg = config_from_dict({
        "name": "lm", "family": "gpt", "init_from": str(base), "lora": {"rank": 4, "dropout": 0.1},
        "data": {"source": "fortune", "path": str(corpora[1]), "block_size": 32, "tokenizer": "pretrained"},
        "model": {"layers": 2, "heads": 2, "width": 32},
        "train": {"steps": 12, "batch_size": 4, "val_every": 4, "checkpoint_every": 5, "ema_decay": 0.9},
    })
    check_resume_is_bit_identical(cfg, tmp_path)


def test_finetune_errors_are_one_line(tmp_path, corpora, tiny_gpt2, run_cli):
    base = pretrain(tmp_path, corpora)
    poems = recipe(tmp_path, corpora[1], "x")
    code, _, err = run_cli("finetune", tmp_path, poems)
    assert_one_line_error(code, err, "neither a genlab run")
    code, _, err = run_cli("finetune", base, poems, "data.block_size=16")
    assert_one_line_error(code, err, "data.block_size")
    code, _, err = run_cli("finetune", base, poems, "data.tokenizer=bpe")
    assert_one_line_error(code, err, "uses its base's tokenizer")
    code, _, err = run_cli("finetune", base, poems, "lora.targets=[nope]")
    assert_one_line_error(code, err, "lora.targets")
    code, _, err = run_cli("finetune", base, poems, "lora.rank=-1")
    assert_one_line_error(code, err, "lora.rank")
    unseen = fortune_file(tmp_path / "unseen", ["Ω≈ç√∫ unknown symbols"] * 20)
    code, _, err = run_cli("finetune", base, recipe(tmp_path, unseen, "y"), "--runs-dir", tmp_path / "runs")
    assert_one_line_error(code, err, "not in this tokenizer's vocabulary")
    assert not (tmp_path / "runs" / "y").exists()
    code, _, err = run_cli("merge", base, tmp_path / "m")
    assert_one_line_error(code, err, "no LoRA adapters")
    code, _, err = run_cli("finetune", base, poems, "--runs-dir", tmp_path / "runs", "train.steps=2")
    assert code == 0, err
    code, _, err = run_cli("finetune", tmp_path / "runs" / "x", poems, "name=z", "--runs-dir", tmp_path / "runs")
    assert_one_line_error(code, err, "merge them first")
    for f in tiny_gpt2.glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    code, _, err = run_cli("finetune", tiny_gpt2, poems, "name=w", "--runs-dir", tmp_path / "runs")
    assert_one_line_error(code, err, "pickled .bin")


def test_lora_off_by_default_and_families_without_default_targets_say_so(corpora):
    assert LoraConfig().rank == 0
    cfg = config_from_dict({"family": "lstm", "lora": {"rank": 2}, "model": {"width": 16},
                            "data": {"source": "fortune", "path": str(corpora[1]), "block_size": 16}})
    with pytest.raises(GenlabError, match="no default LoRA targets; set lora.targets"):
        build_model(cfg, load_dataset(cfg.data).spec())
