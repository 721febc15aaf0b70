from pathlib import Path

import pytest

from genlab.config import load_config
from genlab.core.errors import GenlabError

RECIPES = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses(recipe):
    cfg = load_config(recipe)
    assert cfg.name == recipe.stem
    assert cfg.model is not None


def test_overrides_are_typed(tmp_path):
    overrides = ["train.lr=1e-3", "train.steps=7", "model.widths=[4,8]", "data.limit=null"]
    cfg = load_config(RECIPES[0].with_name("digits-vae.yaml"), overrides)
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.steps == 7
    assert cfg.model.widths == [4, 8]
    assert cfg.data.limit is None


def test_unknown_key_lists_valid_ones():
    with pytest.raises(GenlabError, match=r"unknown config key 'train\.stpes'.*train\.steps"):
        load_config(None, ["train.stpes=3"])
    with pytest.raises(GenlabError, match=r"unknown config key 'model\.wdiths'.*model\.widths"):
        load_config(None, ["model.wdiths=3"])


def test_wrong_types_and_choices_are_errors():
    with pytest.raises(GenlabError, match="train.steps' must be int"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(GenlabError, match="model.likelihood"):
        load_config(None, ["model.likelihood=poisson"])
    with pytest.raises(GenlabError, match="unknown model family 'flow'"):
        load_config(None, ["family=flow"])
    with pytest.raises(GenlabError, match="key=value"):
        load_config(None, ["train.steps"])


def test_bad_files(tmp_path):
    with pytest.raises(GenlabError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(GenlabError, match="not valid YAML"):
        load_config(bad)


def test_out_of_range_values_are_errors():
    for override, needle in (("train.steps=0", "train.steps' must be > 0"),
                             ("train.ema_decay=1.5", "train.ema_decay"),
                             ("data.val_fraction=1.2", "data.val_fraction"),
                             ("data.source=s3", "data.source"),
                             ("train.schedule=exp", "train.schedule"),
                             ("eval.iwae_k=0", "eval.iwae_k")):
        with pytest.raises(GenlabError, match=needle):
            load_config(None, [override])


def test_wgan_gp_refuses_batch_norm_in_the_critic():
    with pytest.raises(GenlabError, match="discriminator_norm=batch breaks the per-sample gradient penalty"):
        load_config(None, ["family=gan", "model.loss=wgan-gp", "model.discriminator_norm=batch"])
