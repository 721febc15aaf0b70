"""The table audit: each finding is absent on clean data and names the planted rows and columns (1-based data
rows, as in the file) when one problem is planted."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from genlab.core.errors import GenlabError
from genlab.modalities.table.audit import audit_table
from genlab.modalities.table.io import load_table


def clean_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n).round(4), "y": rng.normal(5, 2, n).round(4),
                         "age": rng.integers(18, 80, n), "city": rng.choice(["Paris", "Lyon", "Nice", "Lille"], n),
                         "member": rng.choice(["yes", "no"], n), "score": rng.normal(size=n).round(4)})


def audit(tmp_path, df: pd.DataFrame, target: str | None = None, missing_values=()) -> dict:
    """Through the CSV file and the loader, as `genlab data audit` reads it."""
    df.to_csv(tmp_path / "t.csv", index=False)
    return audit_table(load_table(tmp_path / "t.csv", missing_values), target)


@pytest.fixture
def clean(tmp_path):
    return audit(tmp_path, clean_table(), target="member")


def test_clean_table_has_no_findings(clean):
    assert clean["rows"] == 400 and clean["missing_values"]["cells"] == 0
    assert clean["exact_duplicates"]["extra_copies"] == 0 and clean["near_duplicates"]["pairs"] == 0
    assert clean["constant_columns"] == [] and clean["id_like_columns"] == []
    assert clean["outliers"]["count"] == 0 and clean["rare_categories"]["count"] == 0
    assert clean["target_leakage"]["leaking_columns"] == []
    assert clean["target_leakage"]["top_scores"][0]["score"] < 0.7


def test_missing_values_name_rows_columns_and_what_counted(tmp_path):
    df = clean_table().astype({"city": object})
    df.loc[[4, 9], "city"] = None  # written as empty cells
    df.loc[20, "city"] = "?"
    df.loc[30, "city"] = "None"  # a category, not a missing value
    found = audit(tmp_path, df, missing_values=["?"])["missing_values"]
    assert found["cells"] == 3
    (city,) = found["columns"]
    assert city["column"] == "city" and city["rows"] == [5, 10, 21]
    assert city["read_as_missing"] == {"empty cell": 2, "?": 1}


def test_exact_duplicates_name_their_rows(tmp_path):
    df = clean_table()
    df.iloc[100] = df.iloc[5]
    df.iloc[300] = df.iloc[5]
    found = audit(tmp_path, df)["exact_duplicates"]
    assert found["extra_copies"] == 2 and found["first_groups"] == [[6, 101, 301]]


def test_near_duplicates_name_rows_and_the_differing_column(tmp_path):
    df = clean_table()
    df.iloc[200] = df.iloc[7]
    df.loc[200, "city"] = "Lyon" if df.loc[7, "city"] != "Lyon" else "Nice"  # one column changed
    df.iloc[300] = df.iloc[9]
    df.loc[300, "city"] = "  " + df.loc[9, "city"].upper()  # only spelling (case, spaces) changed
    pairs = audit(tmp_path, df)["near_duplicates"]["first_pairs"]
    assert pairs == [{"rows": [8, 201], "differ_in": ["city"]}, {"rows": [10, 301], "differ_in": ["city"]}]
    # a row copied under a new id: the id-like column is not compared, but is named
    ids = clean_table().assign(customer=np.random.default_rng(1).permutation(400) + 1000)
    ids.iloc[50, :-1] = ids.iloc[3, :-1]
    report = audit(tmp_path, ids)
    assert report["near_duplicates"]["first_pairs"] == [{"rows": [4, 51], "differ_in": ["customer"]}]


def test_constant_and_id_like_columns(tmp_path):
    df = clean_table().assign(country="FR", customer=np.random.default_rng(1).permutation(400) + 1000)
    report = audit(tmp_path, df)
    assert report["constant_columns"] == [{"column": "country", "value": "FR", "missing": 0.0}]
    assert report["id_like_columns"] == [{"column": "customer", "kind": "integer", "distinct": 400}]


def test_outliers_name_rows_and_values_most_extreme_first(tmp_path):
    df = clean_table()
    df.loc[50, "x"] = 40.0
    df.loc[60, "x"] = -25.0
    df.loc[70, "age"] = 400
    found = audit(tmp_path, df)["outliers"]
    by_column = {o["column"]: o for o in found["columns"]}
    assert found["count"] == 3 and set(by_column) == {"x", "age"}
    assert by_column["x"]["rows"] == [51, 61] and by_column["x"]["values"] == [40.0, -25.0]
    assert by_column["age"]["rows"] == [71] and by_column["age"]["values"] == [400]


def test_rare_categories_name_their_rows(tmp_path):
    df = clean_table()
    df.loc[76, "city"] = "Atlantis"
    found = audit(tmp_path, df)["rare_categories"]
    assert found["categories"] == [{"column": "city", "value": "Atlantis", "count": 1, "rows": [77]}]


def test_target_leakage_classification_and_regression(tmp_path, clean):
    df = clean_table()
    rng = np.random.default_rng(2)
    code = (df["member"] == "yes").astype(int)
    flipped = rng.choice(len(df), 4, replace=False)
    code[flipped] = 1 - code[flipped]  # 1% noise: still predicts the target almost perfectly
    leak = audit(tmp_path, df.assign(member_code=code), target="member")["target_leakage"]
    assert [c["column"] for c in leak["leaking_columns"]] == ["member_code"]
    assert leak["leaking_columns"][0]["score"] > 0.97 and leak["task"] == "classification"
    assert sorted(leak["leaking_columns"][0]["wrong_rows"]) == sorted((flipped + 1).tolist())
    assert all(s["score"] < 0.7 for s in leak["top_scores"] if s["column"] != "member_code")
    # a numeric target and a column computed from it
    numeric = df.assign(y_in_cents=(df["y"] * 100 + rng.normal(0, 1, len(df))).round())
    leak = audit(tmp_path, numeric, target="y")["target_leakage"]
    assert leak["task"] == "regression" and [c["column"] for c in leak["leaking_columns"]] == ["y_in_cents"]
    assert audit(tmp_path, df, target="y")["target_leakage"]["leaking_columns"] == []
    with pytest.raises(GenlabError, match="eval.target 'price' is not a column"):
        audit(tmp_path, df, target="price")


def test_data_audit_command_writes_json_and_html_for_tables(tmp_path, run_cli):
    df = clean_table()
    df.iloc[100] = df.iloc[5]
    df.to_csv(tmp_path / "t.csv", index=False)
    code, out, err = run_cli("data", "audit", tmp_path / "t.csv", "eval.target=member", "--out", tmp_path / "a")
    assert code == 0, err
    summary = json.loads(out[:out.rindex("}") + 1])
    assert summary["exact duplicate copies"] == 1 and summary["target leakage"] == []
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["exact_duplicates"]["first_groups"] == [[6, 101]]
    page = (tmp_path / "a" / "audit.html").read_text()
    assert "Table audit" in page and "Exact duplicate copies" in page and "[[6, 101]]" in page
    code, _, err = run_cli("data", "audit", tmp_path / "t.csv", "eval.target=nope", "--out", tmp_path / "b")
    assert_one_line_error(code, err, "eval.target 'nope'")
