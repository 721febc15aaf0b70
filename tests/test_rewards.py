"""Rewards: built-ins, user functions loaded by name, a flipped sign, and failures reported as one clear error."""

from __future__ import annotations

import sys

import pytest

from genlab.core.errors import GenlabError
from genlab.rewards import load_reward


def test_builtins_score_what_they_name():
    verse = load_reward("regular_verse")
    assert verse("", "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。") == 1.0
    assert verse("", "床前明月光，疑是地上霜") == 0.0
    assert load_reward("keyword=love")("", "Love is all; I love it. lovely") == 2.0
    length = load_reward("length=10")
    assert length("", "x" * 10) == 0.0 and length("", "x" * 15) == -0.5
    sentiment = load_reward("sentiment")
    assert sentiment("", "What a wonderful, happy day!") > 0.5 > -0.5 > sentiment("", "A horrible, sad failure.")


def test_a_minus_sign_flips_a_reward():
    assert load_reward("-keyword=a")("", "a a b") == -2.0


def test_user_functions_load_by_module_and_name(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def shout(prompt, completion):\n    return completion.count('!')\n"
        "def broken(prompt, completion):\n    return 1 / 0\n"
        "def wordy(prompt, completion):\n    return 'many'\n"
        "TEXT = 'not a function'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_reward("my_rewards:shout")("hi", "yes!!") == 2.0
    with pytest.raises(GenlabError, match="'my_rewards:broken' failed on a completion: ZeroDivisionError"):
        load_reward("my_rewards:broken")("", "x")
    with pytest.raises(GenlabError, match="must return a finite number, got 'many'"):
        load_reward("my_rewards:wordy")("", "x")
    with pytest.raises(GenlabError, match="is not a function"):
        load_reward("my_rewards:TEXT")
    with pytest.raises(GenlabError, match="has no 'missing'"):
        load_reward("my_rewards:missing")
    with pytest.raises(GenlabError, match="cannot import module 'no_such_module_x'"):
        load_reward("no_such_module_x:f")
    sys.modules.pop("my_rewards", None)


def test_unknown_and_malformed_rewards_are_clear_errors():
    with pytest.raises(GenlabError, match="unknown reward 'nice'; choose one of: classifier, keyword, length"):
        load_reward("nice")
    with pytest.raises(GenlabError, match="keyword needs a word"):
        load_reward("keyword")
    with pytest.raises(GenlabError, match="give a target length"):
        load_reward("length=long")


@pytest.fixture(scope="module")
def class_runs(tmp_path_factory):
    """Two character GPTs trained with genlab on the texts of two classes (sunny and gloomy sentences), with one
    character set (data.vocab_from), so each can score the other's text."""
    import random

    from genlab.config import config_from_dict
    from genlab.pipeline import train_config

    folder = tmp_path_factory.mktemp("classes")
    rng = random.Random(0)
    words = {"sunny": ["bright", "warm", "joy", "smile", "light"], "gloomy": ["dark", "cold", "grief", "rain", "gray"]}
    roots = {}
    for label, vocab in words.items():
        docs = [" ".join(rng.choice(vocab) for _ in range(5)) for _ in range(200)]
        (folder / f"{label}.txt").write_text("\n%\n".join(docs) + "\n")
    for label in words:
        cfg = config_from_dict({"name": label, "family": "gpt",
                                "data": {"source": "fortune", "path": str(folder / f"{label}.txt"), "block_size": 16,
                                         "vocab_from": [str(folder / f"{w}.txt") for w in words]},
                                "model": {"layers": 1, "heads": 2, "width": 32},
                                "train": {"steps": 120, "batch_size": 16, "lr": 1e-2, "val_every": 0,
                                          "checkpoint_every": 0}})
        roots[label] = train_config(cfg, folder / "runs")[0].root
    return roots


def test_classifier_reward_is_the_posterior_of_the_first_run(class_runs):
    """classifier=A,B: the posterior of class A from two genlab language models; the classes' held-out texts are
    told apart (AUC 1), the order of the runs flips the posterior (p and 1 - p), texts longer than the context
    are scored in windows."""
    from sklearn.metrics import roc_auc_score

    sunny, gloomy = str(class_runs["sunny"]), str(class_runs["gloomy"])
    reward = load_reward(f"classifier={sunny},{gloomy}")
    flipped = load_reward(f"classifier={gloomy},{sunny}")
    texts = ["warm joy light smile", "bright smile warm", "cold rain gray grief", "dark grief rain cold"]
    scores = [reward("", t) for t in texts]
    assert roc_auc_score([1, 1, 0, 0], scores) == 1.0
    assert scores[0] > 0.9 and scores[3] < 0.1
    for text, p in zip(texts, scores, strict=True):
        assert flipped("", text) == pytest.approx(1 - p, abs=1e-9)
    long = " ".join(["bright warm joy"] * 12)  # ~180 characters, contexts of 16
    assert reward("", long) > 0.99


def test_classifier_reward_errors(class_runs, tmp_path):
    with pytest.raises(GenlabError, match="two or more language-model runs"):
        load_reward(f"classifier={class_runs['sunny']}")
    with pytest.raises(GenlabError, match="not found|no run|does not exist"):
        load_reward(f"classifier={class_runs['sunny']},{tmp_path / 'missing'}")
