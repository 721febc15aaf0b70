"""Language-model families end to end: train, resume, sample with a prompt, perplexity, errors."""

import json
import math

import pytest
import torch
from conftest import assert_one_line_error
from test_trainer import check_resume_is_bit_identical

from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.modalities import load_dataset
from genlab.pipeline import generate, open_run
from genlab.train.trainer import build_model

POEMS = ["床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。",
         "The quick brown fox 🦊 jumps over the lazy dog.", "To be, or not to be: that is the question."]


@pytest.fixture
def corpus(tmp_path):
    """A small fortune-format corpus with CJK, emoji and one exact duplicate."""
    path = tmp_path / "corpus"
    docs = [f"{POEMS[i % 4]} ({i})" for i in range(60)] + [POEMS[0]] * 2
    path.write_text("\n%\n".join(docs) + "\n", encoding="utf-8")
    return path


def text_config(family, path, **model):
    return config_from_dict({
        "name": "lm", "family": family,
        "data": {"source": "fortune", "path": str(path), "block_size": 32},
        "model": model or ({"layers": 2, "heads": 2, "width": 16} if family == "gpt" else {"width": 16}),
        "train": {"steps": 12, "batch_size": 4, "val_every": 4, "checkpoint_every": 5, "ema_decay": 0.9,
                  "schedule": "cosine"},
    })


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_language_models_resume_bit_identically(tmp_path, corpus, family):
    check_resume_is_bit_identical(text_config(family, corpus), tmp_path)


def test_uniform_model_has_perplexity_equal_to_the_vocabulary(corpus):
    cfg = text_config("gpt", corpus)
    ds = load_dataset(cfg.data)
    model = build_model(cfg, ds.spec())

    class Uniform(torch.nn.Module):
        def forward(self, idx, cache=None):
            return torch.zeros(*idx.shape, ds.tokenizer.vocab_size)

    model.net = Uniform()
    lk = model.test_likelihood(ds, cfg.eval, False)
    assert math.isclose(lk["perplexity"], ds.tokenizer.vocab_size, rel_tol=1e-6)  # float32 logits
    assert math.isclose(lk["bits_per_token"], math.log2(ds.tokenizer.vocab_size), rel_tol=1e-6)
    assert lk["tokens"] == ds.tokens["test"].numel() - 1  # every test token but the first is predicted once


@pytest.mark.parametrize("family, tokenizer", [("gpt", "char"), ("gpt", "bpe"), ("lstm", "char")])
def test_text_run_through_the_cli(tmp_path, corpus, run_cli, family, tokenizer):
    extra = ["model.layers=2", "model.heads=2", "model.width=16"] if family == "gpt" else ["model.width=16"]
    (tmp_path / "lm.yaml").write_text("name: lm\n")
    args = ["train", tmp_path / "lm.yaml", f"family={family}", "data.source=fortune", f"data.path={corpus}",
            f"data.tokenizer={tokenizer}", "data.vocab_size=300", "data.block_size=32", "train.steps=30",
            "train.batch_size=8", "train.val_every=10", *extra, "--runs-dir", tmp_path]
    code, out, err = run_cli(*args)
    assert code == 0, err
    run = tmp_path / "lm"
    assert (run / "tokenizer.json").is_file()
    desc = json.loads((run / "dataset.json").read_text())
    assert desc["exact_duplicates"]["extra_copies"] == 1 and desc["tokenizer"] == tokenizer
    code, out, err = run_cli("sample", run, "--prompt", "床前", "--max-tokens", "20", "--n", "3", "--seed", "1",
                             "--temperature", "0.9", "--top-k", "20", "--out", tmp_path / "s.jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 and all(r["prompt"] == "床前" for r in rows)
    code, again, err = run_cli("sample", run, "--prompt", "床前", "--max-tokens", "20", "--n", "3", "--seed", "1",
                               "--temperature", "0.9", "--top-k", "20", "--out", tmp_path / "t.jsonl")
    assert (tmp_path / "t.jsonl").read_text() == (tmp_path / "s.jsonl").read_text()  # seeded
    code, out, err = run_cli("sample", run, "--prompt", "To be", "--max-tokens", "15", "--temperature", "0")
    assert code == 0 and out.startswith("To be"), err
    code, out, err = run_cli("eval", run)
    assert code == 0, err
    lk = json.loads((run / "metrics.json").read_text())["likelihood"]
    assert 1 < lk["perplexity"] < desc["vocab_size"] and lk["bits_per_character"] > 0
    assert (run / "samples" / "samples.txt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["memorisation"]["n_samples"] == 20 and 0 <= metrics["diversity"]["distinct_1"] <= 1
    assert "distinct-1 / distinct-2" in out and metrics["continuations"]["n"] >= 1
    assert 0 <= metrics["continuations"]["bleu"] <= 100 and 0 <= metrics["diversity"]["self_bleu"] <= 100
    for case, needles in [
        (("sample", run, "--label", "1"), ["--label does not apply to the", "language model"]),
        (("sample", run, "--steps", "5"), ["--steps does not apply"]),
        (("sample", run, "--out", tmp_path / "x.png"), ["--out must end in .txt or .jsonl"]),
        (("sample", run, "--top-p", "1.5"), ["--top-p"]),
        (("sample", run, "--max-tokens", "0"), ["--max-tokens must be between"]),
        (("sample", run, "--n", "1001"), ["--n must be between 1 and 1,000"]),
    ]:
        code, _, err = run_cli(*case)
        assert_one_line_error(code, err, *needles)
    with pytest.raises(GenlabError, match=r"^n must be between 1 and 1,000 per call, got 0$"):
        generate(open_run(run), 0)  # the Python API names its own argument, not the CLI's flag


def test_text_config_errors_are_one_line(tmp_path, corpus, run_cli):
    (tmp_path / "lm.yaml").write_text("name: lm\n")
    base = ["train", tmp_path / "lm.yaml", "family=gpt", "data.source=fortune", "--runs-dir", tmp_path]
    for extra, needles in [
        ([f"data.path={corpus}", "model.width=30", "model.heads=4"], ["model.width=30 must be divisible"]),
        ([f"data.path={corpus}", "data.tokenizer=word"], ["data.tokenizer", "char, bpe"]),
        ([f"data.path={tmp_path}/missing"], ["data path not found"]),
        ([f"data.path={corpus}", "data.block_size=100000"], ["fewer than data.block_size"]),
        ([], ["needs data.path"]),
    ]:
        code, _, err = run_cli(*base, *extra)
        assert_one_line_error(code, err, *needles)
