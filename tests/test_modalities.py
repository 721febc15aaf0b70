"""Regressions of the modality issue: a table run is served on its own endpoint (never a 500), merge works on
every family that LoRA can adapt, and a request to the wrong endpoint names the right one."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_config
from fastapi.testclient import TestClient

from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.modalities import load_dataset
from genlab.pipeline import generate, merge, open_run, train_config
from genlab.serve.app import create_app
from genlab.serve.keys import KeyStore
from genlab.train.trainer import build_model


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rows")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"city": rng.choice(["Paris", "Lyon", "None"], 400), "age": rng.integers(18, 90, 400),
                          "income": rng.lognormal(10, 0.5, 400)})
    frame.to_csv(root / "people.csv", index=False)
    cfg = config_from_dict({"name": "people", "family": "ctgan", "data": {"source": "table",
                                                                          "path": str(root / "people.csv")},
                            "model": {"latent_dim": 8, "generator_widths": [32], "discriminator_widths": [32],
                                      "pac": 4},
                            "train": {"steps": 30, "batch_size": 40, "val_every": 0, "checkpoint_every": 0}})
    run, _ = train_config(cfg, root)
    image_run, _ = train_config(tiny_config("vae", name="digits"), root)
    return run.root, image_run.root, root


def test_a_table_run_is_served_on_its_rows_endpoint(table_run, tmp_path):
    table, image, _ = table_run
    store = KeyStore(tmp_path / "keys.json")
    auth = {"Authorization": f"Bearer {store.add('t')[1]}"}
    client = TestClient(create_app([table, image], store))
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listed["people"]["modality"] == "table" and listed["digits"]["modality"] == "image"
    r = client.post("/v1/models/people/rows", json={"n": 7, "seed": 3}, headers=auth)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert len(rows) == 7 and set(rows[0]) == {"city", "age", "income"}
    many = client.post("/v1/models/people/rows", json={"n": 200}, headers=auth).json()["rows"]
    cities = {row["city"] for row in many}
    assert cities <= {"Paris", "Lyon", "None"} and "None" in cities  # the text "None" stays a category, not null
    again = client.post("/v1/models/people/rows", json={"n": 7, "seed": 3}, headers=auth).json()["rows"]
    assert again == rows  # seeded
    r = client.post("/v1/models/people/rows", json={"n": 50, "conditions": {"city": "Lyon"}, "format": "csv"},
                    headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lyon = pd.read_csv(io.StringIO(r.text), keep_default_na=False)
    assert len(lyon) == 50 and set(lyon.columns) == {"city", "age", "income"} and (lyon["city"] == "Lyon").all()
    bad = [({"n": 5, "conditions": {"city": "Berlin"}}, 400), ({"n": 0}, 422), ({"n": 5, "label": 1}, 422),
           ({"n": 10**30}, 422)]
    for body, code in bad:
        r = client.post("/v1/models/people/rows", json=body, headers=auth)
        assert r.status_code == code and r.json()["detail"], (body, r.status_code, r.text)
    r = client.post("/v1/models/people/images", json={"n": 2}, headers=auth)
    assert r.status_code == 400 and "/v1/models/people/rows" in r.json()["detail"]
    r = client.post("/v1/models/digits/rows", json={"n": 2}, headers=auth)
    assert r.status_code == 400 and "/v1/models/digits/images" in r.json()["detail"]


def test_python_api_names_n_not_the_cli_flag(table_run):
    """generate() is called with `n`; `--n` is the command line's name for it (tests/test_cli.py)."""
    rows, images, _ = table_run
    for run, most in ((rows, "1,000,000"), (images, "100,000")):
        with pytest.raises(GenlabError, match=rf"^n must be between 1 and {most} per call, got 0$"):
            generate(open_run(run), 0)


def test_non_finite_and_huge_numbers_are_422(table_run, tmp_path):
    """NaN / Infinity in a raw JSON body and integers beyond int64 are refused by validation, never a 500."""
    _, image, _ = table_run
    store = KeyStore(tmp_path / "keys.json")
    auth = {"Authorization": f"Bearer {store.add('t')[1]}", "content-type": "application/json"}
    client = TestClient(create_app([image], store))
    for body in ('{"n": 2, "label": 1000000000000000000000000000000}', '{"n": NaN}', '{"n": 2, "seed": Infinity}',
                 '{"n": 2, "label": -Infinity}'):
        r = client.post("/v1/models/digits/images", content=body, headers=auth)
        assert r.status_code == 422, (body, r.status_code, r.text)


@pytest.mark.parametrize("family", ["vae", "gan", "diffusion", "ctgan"])  # gpt, lstm, hf: test_finetune
def test_merge_works_on_every_family_lora_can_adapt(family, table_run, tmp_path):
    """`genlab merge` used to reach dataset.save_artifacts, which image datasets lacked."""
    base = open_run(table_run[0]).config if family == "ctgan" else tiny_config(family, train={"steps": 2})
    cfg = config_from_dict({**base.to_dict(), "name": f"{family}-base"})
    model = build_model(cfg, load_dataset(cfg.data).spec())
    layers = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    run, _ = train_config(cfg, tmp_path)
    tuned = config_from_dict({**cfg.to_dict(), "name": f"{family}-lora", "init_from": str(run.root),
                              "lora": {"rank": 2, "alpha": 4, "dropout": 0.0, "targets": layers[:2]}})
    lora_run, _ = train_config(tuned, tmp_path)
    merged = merge(lora_run.root, tmp_path / f"{family}-merged")
    a, b = open_run(lora_run.root), open_run(merged.root)
    assert not b.model.adapted and a.model.adapted
    x, y = generate(a, 4, seed=5), generate(b, 4, seed=5)
    if isinstance(x, pd.DataFrame):
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-4, atol=1e-4)
    else:
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    assert json.loads((merged.root / "dataset.json").read_text())["fingerprint"] == a.dataset.fingerprint


SYSTEM_DATA = {"/usr/share/datasets/fashion-mnist": "dataset-fashion-mnist",
               "/usr/share/games/fortunes": "fortunes / fortunes-zh",
               "/usr/lib/R/site-library": "r-cran-aer / r-cran-kernlab",  # Debian packages a few recipes read
               "data/emoji/": "make emoji"}  # npm's emoji sets, converted (genlab.modalities.image.emoji)


@pytest.mark.parametrize("recipe", sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_recipe_describes_from_a_clone_or_names_its_package(recipe, run_cli):
    """Recipes read data inside the repository or bundled with a dependency; the few that read a Debian
    package's files say which path is missing."""
    raw = yaml.safe_load(recipe.read_text())
    path = (raw.get("data") or {}).get("path") or ""
    path = str(path[0] if isinstance(path, list) else path)
    if path.startswith("rdata:"):  # rdata:FILE.rda:OBJECT
        path = path.partition(":")[2]
    file = path.split(".rda:")[0] + ".rda" if ".rda:" in path else path
    system = next((p for p in SYSTEM_DATA if path.startswith(p)), None)
    assert not path.startswith("..") and (system or not path.startswith("/")), f"{recipe.name} reads {path}"
    code, out, err = run_cli("describe", recipe, "data.limit=50")
    if system and not Path(file).exists():
        assert code == 2 and "not found" in err and path.split("/")[-1] in err, err
    else:
        assert code == 0, err
        assert json.loads(out)["fingerprint"]
