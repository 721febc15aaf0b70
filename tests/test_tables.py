"""Tables: reading, schema inference and flags, and the reversible mode-specific transform."""

import json

import numpy as np
import pandas as pd
import pytest

from genlab.errors import GenlabError
from genlab.tables.io import read_table
from genlab.tables.schema import Schema, infer_schema
from genlab.tables.transform import TableTransformer, fit_modes


def mixed_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bimodal = np.where(rng.random(n) < 0.3, rng.normal(-5, 0.5, n), rng.normal(10, 1.0, n))
    income = rng.lognormal(10, 0.5, n)
    income[rng.random(n) < 0.1] = np.nan  # missing values
    return pd.DataFrame({
        "id": np.arange(n) + 1000,
        "bimodal": bimodal,
        "income": income,
        "age": rng.integers(18, 90, n),
        "children": rng.integers(0, 4, n),
        "city": rng.choice(["Paris", "Lyon", "Nice", None], n, p=[0.5, 0.3, 0.15, 0.05]),
        "member": rng.choice(["yes", "no"], n),
        "joined": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D"),
        "country": "FR",
    })


def test_schema_kinds_flags_and_yaml_round_trip(tmp_path):
    schema = infer_schema(mixed_table())
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"id": "integer", "bimodal": "continuous", "income": "continuous", "age": "integer",
                     "children": "categorical", "city": "categorical", "member": "boolean", "joined": "datetime",
                     "country": "categorical"}
    assert schema["id"].flags == ["id-like"] and schema["id"].drop
    assert schema["country"].flags == ["constant"] and schema["country"].drop
    assert 0.05 < schema["income"].missing < 0.15 and schema["city"].missing > 0
    assert schema["age"].minimum >= 18 and schema["age"].maximum <= 89
    schema.save(tmp_path / "schema.yaml")
    text = (tmp_path / "schema.yaml").read_text().replace("kind: integer", "kind: continuous", 1)
    edited = Schema.from_yaml(text)
    assert edited["id"].kind == "continuous" and edited.rows == 600
    with pytest.raises(GenlabError, match="choose one of"):
        Schema.from_yaml(text.replace("kind: continuous", "kind: fancy", 1))


def test_high_cardinality_is_flagged_with_its_cost():
    from genlab.tables.schema import describe_flags

    df = pd.DataFrame({"code": [f"c{i % 300}" for i in range(3000)], "x": np.arange(3000) % 7 + 0.5})
    schema = infer_schema(df, max_categories=100)
    assert "high-cardinality" in schema["code"].flags
    assert any("code: high-cardinality" in line and "MiB" in line for line in describe_flags(schema))


def test_transform_round_trips_exactly():
    df = mixed_table()
    schema = infer_schema(df)
    t = TableTransformer.fit(df, schema)
    matrix = t.transform(df)
    assert matrix.shape == (len(df), t.width) and matrix.dtype == np.float64
    back = t.inverse(matrix)
    kept = [c.name for c in schema.kept]
    assert list(back.columns) == kept
    assert np.allclose(back["bimodal"], df["bimodal"], rtol=1e-12, atol=1e-12)
    assert back["income"].isna().equals(df["income"].isna())
    assert np.allclose(back["income"].dropna(), df["income"].dropna(), rtol=1e-12)
    assert (back["age"] == df["age"]).all() and back["age"].dtype == np.int64
    assert back["city"].tolist() == [None if pd.isna(c) else c for c in df["city"].tolist()]
    assert back["member"].tolist() == df["member"].tolist()
    assert (back["joined"] == df["joined"]).all()
    assert (back["children"] == df["children"]).all()


def test_generated_matrices_stay_in_range_and_integral():
    df = mixed_table()
    t = TableTransformer.fit(df, infer_schema(df))
    noise = np.random.default_rng(1).uniform(-3, 3, (500, t.width))  # far outside what training produced
    out = t.inverse(noise)
    assert out["age"].between(18, 89).all() and (out["age"] % 1 == 0).all()
    assert out["bimodal"].between(df["bimodal"].min(), df["bimodal"].max()).all()
    assert set(out["city"].dropna()) <= {"Paris", "Lyon", "Nice"}
    assert out["joined"].between(df["joined"].min(), df["joined"].max()).all()
    with pytest.raises(GenlabError, match="expected an N x"):
        t.inverse(noise[:, :-1])


def test_modes_found_in_a_bimodal_column():
    x = mixed_table(3000)["bimodal"].to_numpy()  # 30% around -5, 70% around 10
    modes = fit_modes(x)
    mu, w = np.array(modes["means"]), np.array(modes["weights"])
    assert np.all(np.minimum(abs(mu + 5), abs(mu - 10))[w > 0.05] < 1.5)  # every real component sits on a mode
    assert abs(w[abs(mu + 5) < 1.5].sum() - 0.3) < 0.05 and abs(w[abs(mu - 10) < 1.5].sum() - 0.7) < 0.05


def test_transform_is_json_and_reloads_identically():
    df = mixed_table()
    t = TableTransformer.fit(df, infer_schema(df))
    again = TableTransformer.from_dict(json.loads(json.dumps(t.to_dict())))
    assert np.array_equal(again.transform(df), t.transform(df))


def test_unknown_category_and_bad_files_are_clear_errors(tmp_path):
    df = mixed_table()
    t = TableTransformer.fit(df, infer_schema(df))
    bad = df.copy()
    bad.loc[0, "city"] = "Berlin"
    with pytest.raises(GenlabError, match="not one of its categories"):
        t.transform(bad)
    with pytest.raises(GenlabError, match="table not found"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(GenlabError, match="not a readable parquet table"):
        read_table(tmp_path / "broken.parquet")
    (tmp_path / "t.pkl").write_bytes(b"x")
    with pytest.raises(GenlabError, match="csv, .tsv or .parquet"):
        read_table(tmp_path / "t.pkl")


def test_csv_and_parquet_read_the_same_table(tmp_path):
    df = mixed_table(50).drop(columns=["joined"])
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    a, b = read_table(tmp_path / "t.csv"), read_table(tmp_path / "t.parquet")
    assert list(a.columns) == list(b.columns) == list(df.columns)
    assert np.allclose(a["bimodal"], b["bimodal"]) and a["city"].isna().equals(b["city"].isna())
