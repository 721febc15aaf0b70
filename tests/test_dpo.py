"""DPO on preference pairs: the starting model's loss is log 2, a step raises the chosen completion, the KL
estimate matches a closed form, a flipped reward lowers the reward, and a DPO run resumes bit-identically."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from conftest import assert_one_line_error
from test_trainer import check_resume_is_bit_identical

from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.modalities import load_dataset
from genlab.modalities.prefs.data import encoder_of
from genlab.modalities.prefs.sampling import best_of_n_kl, reward_and_kl, sample_completions
from genlab.nn.decoding import SamplingConfig
from genlab.pipeline import base_dir, open_run, train_config
from genlab.rewards import load_reward
from genlab.train.trainer import build_model

PROMPTS = ["say", "tell", "pick", "give", "show", "name"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A character GPT on "PROMPT: yes no no yes ..." documents: completions vary in how often they say yes."""
    folder = tmp_path_factory.mktemp("dpo")
    rng = random.Random(0)
    docs = [f"{PROMPTS[i % 6]}: " + " ".join(rng.choice(["yes", "no"]) for _ in range(4)) for i in range(120)]
    corpus = folder / "corpus"
    corpus.write_text("\n%\n".join(docs) + "\n", encoding="utf-8")
    cfg = config_from_dict({"name": "base", "family": "gpt",
                            "data": {"source": "fortune", "path": str(corpus), "block_size": 48},
                            "model": {"layers": 1, "heads": 2, "width": 32},
                            "train": {"steps": 150, "batch_size": 16, "lr": 1e-2, "val_every": 0,
                                      "checkpoint_every": 0}})
    run, _ = train_config(cfg, folder / "runs")
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(f"{p}:" for p in PROMPTS * 4) + "\n")
    return folder, run.root, prompts


def prefs(base, run_cli, reward: str, name: str, k: int = 6):
    folder, root, prompts = base
    out = folder / f"{name}.jsonl"
    if not out.exists():
        code, text, err = run_cli("data", "prefs", root, "--reward", reward, "--prompts", prompts, "--k", k,
                                  "--max-tokens", 24, "--out", out)
        assert code == 0, err
    return out


def dpo_config(base, pairs, name: str, lora: bool = True, **train):
    folder, root, _ = base
    return config_from_dict({
        "name": name, "family": "gpt", "init_from": str(root), "model": {"layers": 1, "heads": 2, "width": 32},
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0} if lora else {"rank": 0},
        "data": {"source": "prefs", "path": str(pairs), "block_size": 48, "tokenizer": "pretrained",
                 "val_fraction": 0.2, "test_fraction": 0.0},
        "train": {"objective": "dpo", "beta": 0.5, "steps": 40, "batch_size": 4, "lr": 1e-2, "val_every": 0,
                  "checkpoint_every": 0, **train},
        "eval": {"reward": "keyword=yes", "n_prompts": 6, "samples_per_prompt": 8, "completion_tokens": 24}})


def test_data_prefs_ranks_completions_by_the_reward(base, run_cli):
    pairs = [json.loads(line) for line in prefs(base, run_cli, "keyword=yes", "yes").read_text().splitlines()]
    assert pairs and all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
    reward = load_reward("keyword=yes")
    assert all(reward(p["prompt"], p["chosen"]) == p["chosen_reward"] for p in pairs)
    more = base[0] / "more.jsonl"  # --pairs 3: best/worst, 2nd/2nd-worst, ... each completion used once
    code, _, err = run_cli("data", "prefs", base[1], "--reward", "keyword=yes", "--prompts", base[2], "--k", 6,
                           "--pairs", 3, "--max-tokens", 24, "--out", more)
    assert code == 0, err
    many = [json.loads(line) for line in more.read_text().splitlines()]
    assert len(pairs) < len(many) <= 3 * len(base[2].read_text().splitlines())
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in many)
    code, _, err = run_cli("data", "prefs", base[1], "--reward", "keyword=yes", "--prompts", base[2], "--k", 6,
                           "--pairs", 4, "--out", base[0] / "x.jsonl")
    assert_one_line_error(code, err, "--pairs must be between 1 and k / 2 = 3")
    code, _, err = run_cli("data", "prefs", base[1], "--reward", "nice", "--prompts", base[2], "--out",
                           base[0] / "x.jsonl")
    assert_one_line_error(code, err, "unknown reward 'nice'")
    code, _, err = run_cli("data", "prefs", base[1], "--reward", "keyword=yes", "--prompts", base[2], "--k", "1",
                           "--out", base[0] / "x.jsonl")
    assert_one_line_error(code, err, "--k must be at least 2")


@pytest.mark.parametrize("lora", [True, False])
def test_the_starting_models_dpo_loss_is_log_2(base, run_cli, lora):
    cfg = dpo_config(base, prefs(base, run_cli, "keyword=yes", "yes"), "start", lora=lora)
    ds = load_dataset(cfg.data, base_dir(cfg))
    model = build_model(cfg, ds.spec())
    model.train()
    batch = ds.train_stream(4, 0).next()
    assert batch.x.shape[0] == 8
    loss, terms = model.phase_loss("lm", batch, torch.Generator())
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-7)
    assert float(terms["reward_margin"]) == 0.0


@pytest.mark.parametrize("lora", [True, False])
def test_dpo_compares_policy_and_reference_without_dropout(base, run_cli, lora):
    """With dropout in the network and its adapters, the starting model's DPO loss is still exactly log 2 in
    training mode: the policy's log-probs are taken without dropout, as the reference's are (TRL's
    disable_dropout); the gradient still flows."""
    raw = dpo_config(base, prefs(base, run_cli, "keyword=yes", "yes"), "start-dropout", lora=lora).to_dict()
    raw["model"]["dropout"] = 0.3
    if lora:
        raw["lora"]["dropout"] = 0.3
    cfg = config_from_dict(raw)
    ds = load_dataset(cfg.data, base_dir(cfg))
    model = build_model(cfg, ds.spec())
    model.train()
    loss, _ = model.phase_loss("lm", ds.train_stream(4, 0).next(), torch.Generator())
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-7) and loss.requires_grad
    assert model.net.training  # the mode is restored after the log-probs


def test_dpo_nll_adds_the_chosen_completions_per_token_nll(base, run_cli):
    """train.dpo_nll (RPO): at the start the loss is log 2 plus dpo_nll times the mean per-token NLL of the chosen
    completions, computed here from the network's logits directly; the log-ratios are logged, 0 at the start."""
    cfg = dpo_config(base, prefs(base, run_cli, "keyword=yes", "yes"), "rpo", dpo_nll=0.5)
    ds = load_dataset(cfg.data, base_dir(cfg))
    model = build_model(cfg, ds.spec()).eval()
    batch = ds.train_stream(4, 0).next()
    loss, terms = model.phase_loss("lm", batch, torch.Generator())
    logits = model.net(batch.x[:, :-1])
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.x[:, 1:], reduction="none")
    chosen = ((nll * batch.mask).sum(1) / batch.mask.sum(1))[0::2].mean()
    assert float(loss.detach()) == pytest.approx(math.log(2) + 0.5 * float(chosen.detach()), abs=1e-5)
    assert float(terms["chosen_logratio"]) == float(terms["rejected_logratio"]) == 0.0
    with pytest.raises(GenlabError, match="dpo_nll' must be >= 0"):
        config_from_dict({"train": {"dpo_nll": -1}})


def test_a_step_raises_the_chosen_completion_and_lowers_the_rejected(base, run_cli):
    cfg = dpo_config(base, prefs(base, run_cli, "keyword=yes", "yes"), "step", lora=False)
    ds = load_dataset(cfg.data, base_dir(cfg))
    model = build_model(cfg, ds.spec())
    batch = ds.train_stream(4, 0).next()
    before = model.sequence_logp(batch).detach()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    model.phase_loss("lm", batch, torch.Generator())[0].backward()
    optimizer.step()
    with torch.no_grad():
        after = model.sequence_logp(batch)
        reference = model.sequence_logp(batch, reference=True)
    change = after - before
    assert float(change[0::2].sum()) > 0 > float(change[1::2].sum())  # chosen up, rejected down
    torch.testing.assert_close(reference, before)  # the reference stayed where the policy started


def test_the_kl_estimate_matches_the_closed_form(base, run_cli):
    """One-token completions: KL(policy || reference) = sum_v p(v) log p(v) / q(v) from the two next-token
    distributions; the Monte Carlo estimate over sampled completions agrees within its standard error."""
    cfg = dpo_config(base, prefs(base, run_cli, "keyword=yes", "yes"), "kl")
    ds = load_dataset(cfg.data, base_dir(cfg))
    model = build_model(cfg, ds.spec()).eval()
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 2.0)  # a policy away from the reference
    encoder = encoder_of(ds)
    prompt = "say: yes"
    ids = torch.tensor([encoder.prompt_ids(prompt)])
    with torch.no_grad():
        p = model.net(ids)[0, -1].log_softmax(-1)
        with model.reference_net() as ref:
            q = ref(ids)[0, -1].log_softmax(-1)
    exact = float((p.exp() * (p - q)).sum())
    assert exact > 0.05
    found = reward_and_kl(model, encoder, [prompt], None, 4000, SamplingConfig(max_new_tokens=1), seed=0)["kl"]
    assert abs(found["mean"] - exact) < 4 * found["stderr"] + 1e-3, (found, exact)
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(1) == 0.0


def test_dpo_moves_the_reward_its_way_and_a_flipped_reward_lowers_it(base, run_cli):
    folder = base[0]
    means = {}
    for reward in ("keyword=yes", "-keyword=yes"):
        name = "up" if reward[0] != "-" else "down"
        cfg = dpo_config(base, prefs(base, run_cli, reward, name), name, steps=80, lr=3e-3, val_every=80)
        cfg.eval.samples_per_prompt = 32
        run, summary = train_config(cfg, folder / "runs")
        assert summary["validation"]["reward_accuracy"] >= 0.5
        code, out, err = run_cli("eval", run.root)
        assert code == 0, err
        metrics = json.loads(run.metrics.read_text())["policy"]
        assert metrics["kl"]["mean"] > 0
        means[name] = metrics["reward"]
    # measured 2.82 against 2.39 (DPO on this toy mostly pushes the rejected down; the flipped direction is easy)
    assert means["up"]["policy_mean"] > means["up"]["reference_mean"] + 0.2, means
    assert means["down"]["policy_mean"] < means["down"]["reference_mean"] - 0.3, means
    run = open_run(folder / "runs" / "up")
    done = sample_completions(run.model.net, encoder_of(run.dataset), "say:", 2, SamplingConfig(max_new_tokens=8),
                              torch.Generator().manual_seed(0))
    assert len(done.texts) == 2
    code, _, err = run_cli("merge", folder / "runs" / "up", folder / "merged")
    assert code == 0, err
    code, _, err = run_cli("eval", folder / "merged")  # the base was folded in: no reference to measure KL against
    assert_one_line_error(code, err, "not trained with train.objective=dpo or grpo")


def test_a_dpo_run_resumes_bit_identically(base, run_cli, tmp_path):
    cfg = dpo_config(base, prefs(base, run_cli, "keyword=yes", "yes"), "resume", steps=12, checkpoint_every=5,
                     val_every=4, ema_decay=0.9)
    check_resume_is_bit_identical(cfg, tmp_path)


def test_objective_errors_are_clear(base, run_cli):
    with pytest.raises(GenlabError, match="train.objective=dpo tunes language models"):
        build_model(config_from_dict({"family": "vae", "train": {"objective": "dpo"}}),
                    load_dataset(config_from_dict({}).data).spec())
    with pytest.raises(GenlabError, match="choose one of"):
        config_from_dict({"train": {"objective": "ppo"}})


def grpo_config(base, name: str, reward: str, **train):
    folder, root, prompts = base
    return config_from_dict({
        "name": name, "family": "gpt", "init_from": str(root), "model": {"layers": 1, "heads": 2, "width": 32},
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "data": {"source": "prompts", "path": str(prompts), "reward": reward, "block_size": 48,
                 "tokenizer": "pretrained", "val_fraction": 0.25, "test_fraction": 0.0},
        "train": {"objective": "grpo", "beta": 0.05, "group_size": 6, "completion_tokens": 24, "steps": 30,
                  "batch_size": 2, "lr": 1e-2, "val_every": 30, "checkpoint_every": 0, "log_every": 10, **train},
        "eval": {"n_prompts": 6, "samples_per_prompt": 8, "completion_tokens": 24}})


def test_grpo_raises_the_reward_and_a_flipped_reward_lowers_it(base, run_cli):
    folder = base[0]
    found, runs = {}, {}
    for name, reward in (("grpo-up", "keyword=yes"), ("grpo-down", "-keyword=yes")):
        run, summary = train_config(grpo_config(base, name, reward), folder / "runs")
        assert set(summary["validation"]) == {"reward", "kl"}
        logged = [line.split(",") for line in run.log.read_text().splitlines()[1:]]
        assert {"reward", "kl"} <= {metric for _, split, metric, _ in logged if split == "train"}  # progress
        code, out, err = run_cli("eval", run.root, "eval.reward=keyword=yes")
        assert code == 0, err
        found[name] = json.loads(run.metrics.read_text())["policy"]
        runs[name] = run
    run = runs["grpo-up"]
    held_out = folder / "held-out.txt"  # eval.prompts: one prompt set for runs tuned on different data
    held_out.write_text("say:\nname:\ngive:\n")
    code, out, err = run_cli("eval", run.root, "eval.reward=keyword=yes", f"eval.prompts={held_out}")
    assert code == 0, err
    shared = json.loads(run.metrics.read_text())["policy"]
    assert (shared["split"], shared["prompts"]) == (str(held_out), 3)
    assert shared["reward"]["policy_mean"] > shared["reward"]["reference_mean"], shared
    # eval.reference: the base run itself is the same network as the adapters switched off
    code, out, err = run_cli("eval", run.root, "eval.reward=keyword=yes", f"eval.reference={base[1]}")
    assert code == 0, err
    again = json.loads(run.metrics.read_text())["policy"]
    assert again["reference_run"] == str(base[1])
    assert again["kl"]["mean"] == pytest.approx(found["grpo-up"]["kl"]["mean"], abs=1e-4)
    assert again["reward"] == found["grpo-up"]["reward"]
    code, out, err = run_cli("eval", run.root, f"eval.prompts={folder / 'missing.txt'}")
    assert code != 0 and "prompts file not found" in out + err
    up, down = found["grpo-up"]["reward"], found["grpo-down"]["reward"]
    assert up["policy_mean"] > up["reference_mean"] + 0.3, found
    assert down["policy_mean"] < down["reference_mean"] - 0.3, found
    assert found["grpo-up"]["kl"]["mean"] > 0


def test_a_grpo_run_resumes_bit_identically(base, tmp_path):
    cfg = grpo_config(base, "grpo-resume", "keyword=yes", steps=12, checkpoint_every=5, val_every=4, group_size=3,
                     ema_decay=0.9)
    check_resume_is_bit_identical(cfg, tmp_path)


def test_grpo_needs_prompts_with_a_reward(base):
    raw = grpo_config(base, "x", "keyword=yes").to_dict()
    raw["data"]["reward"] = None
    with pytest.raises(GenlabError, match="needs data.reward"):
        load_dataset(config_from_dict(raw).data, base[1])
    with pytest.raises(GenlabError, match="group_size' must be >= 2"):
        config_from_dict({"train": {"group_size": 1}})


def test_a_chat_base_frames_pairs_with_its_template(tmp_path, run_cli):
    """Pairs for a chat run: the prompt a user turn, the completion the answer (its end-of-turn marker trained),
    sampled until the end of turn; the starting loss is log 2 there too."""
    from conftest import tiny_chat_config

    chat, _ = train_config(tiny_chat_config(tmp_path, steps=20), tmp_path / "runs")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Add {i} and {i + 1}."}) + "\n" for i in range(6)))
    out = tmp_path / "pairs.jsonl"
    code, text, err = run_cli("data", "prefs", chat.root, "--reward", "length=8", "--prompts", prompts, "--k", 4,
                              "--max-tokens", 16, "--out", out)
    assert code == 0, err
    assert "<|end|>" not in out.read_text()
    cfg = config_from_dict({"name": "chat-dpo", "family": "gpt", "init_from": str(chat.root),
                            "model": {"layers": 1, "heads": 2, "width": 16}, "lora": {"rank": 2, "dropout": 0.0},
                            "data": {"source": "prefs", "path": str(out), "block_size": 64,
                                     "tokenizer": "pretrained", "val_fraction": 0.2, "test_fraction": 0.0},
                            "train": {"objective": "dpo"}})
    ds = load_dataset(cfg.data, base_dir(cfg))
    assert ds.template is not None and ds.describe()["format"] == "chat template"
    batch = ds.train_stream(2, 0).next()
    end = ds.tokenizer.token_id("<|end|>")
    assert all(((row[1:] == end) & (w > 0)).any() for row, w in zip(batch.x, batch.mask, strict=True))
    model = build_model(cfg, ds.spec())
    assert float(model.phase_loss("lm", batch, torch.Generator())[0].detach()) == pytest.approx(math.log(2),
                                                                                                abs=1e-7)


def test_grpo_compares_policy_and_reference_without_dropout(base, tmp_path):
    """At the start the policy is the reference, so GRPO's KL is 0 even when the network and its adapters have
    dropout: the policy's log-probs are taken in eval mode, like the reference's and the rollouts'."""
    raw = grpo_config(base, "grpo-dropout", "keyword=yes", steps=1, log_every=1, val_every=0, lr=1e-12).to_dict()
    raw["model"]["dropout"], raw["lora"]["dropout"] = 0.3, 0.3
    run, _ = train_config(config_from_dict(raw), tmp_path / "runs")
    logged = {metric: float(value) for _, split, metric, value in
              (line.split(",") for line in run.log.read_text().splitlines()[1:]) if split == "train"}
    assert abs(logged["kl"]) < 1e-4, logged
