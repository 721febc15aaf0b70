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
    with pytest.raises(GenlabError, match="unknown reward 'nice'; choose one of: keyword, length"):
        load_reward("nice")
    with pytest.raises(GenlabError, match="keyword needs a word"):
        load_reward("keyword")
    with pytest.raises(GenlabError, match="give a target length"):
        load_reward("length=long")
