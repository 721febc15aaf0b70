"""Corpus audit against planted problems: exact and near copies (English and Chinese), empty and corrupt
records, boilerplate, length outliers and mixed scripts."""

import json

import numpy as np

from genlab.modalities.text.audit import audit_text, near_duplicate_pairs, read_records, shingles

WORDS = ("time people year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact river stone light garden winter letter music window "
         "market story morning paper table money voice summer kitchen forest island ").split()
HAN = "春江潮水连海平明月共生滟随波千万里何处无月光流宛转绕芳甸花林皆似霰空里霜不觉飞汀上白沙看见"


def planted_corpus(seed: int = 0):
    rng = np.random.default_rng(seed)
    english = [" ".join(rng.choice(WORDS, rng.integers(25, 40))) + "." for _ in range(300)]
    chinese = ["".join(rng.choice(list(HAN), 28)) for _ in range(100)]
    docs = english + chinese
    n = len(docs)
    k = int(0.05 * n)
    exact_src = rng.choice(n, k, replace=False)
    near_src = rng.choice(np.setdiff1d(np.arange(n), exact_src), k, replace=False)
    near = []
    for s in near_src:  # change one word / two characters: still clearly the same record
        d = docs[s]
        if s < 300:
            words = d.split()
            words[rng.integers(len(words))] = "zebra"
            near.append(" ".join(words))
        else:
            chars = list(d)
            chars[5], chars[20] = "龙", "凤"
            near.append("".join(chars))
    docs = docs + [docs[s] for s in exact_src] + near
    return docs, n, k, exact_src, near_src


def test_planted_duplicates_are_found_in_english_and_chinese():
    docs, n, k, exact_src, near_src = planted_corpus()
    report = audit_text(docs, listed=None)
    copies = {i for g in report["exact_duplicates"]["first_groups"] for i in g[1:]}
    exact_recall = len(copies & set(range(n, n + k))) / k
    pairs = {(i, j) for i, j, _ in report["near_duplicates"]["first_pairs"]}
    planted = {(int(s), n + k + t) for t, s in enumerate(near_src)}
    near_recall = len(pairs & planted) / k
    near_precision = len(pairs & planted) / max(1, len(pairs))
    print(f"exact recall {exact_recall:.3f}; near recall {near_recall:.3f}, precision {near_precision:.3f} "
          f"({len(pairs)} pairs)")
    assert exact_recall == 1.0 and report["exact_duplicates"]["extra_copies"] == k
    assert near_recall >= 0.9 and near_precision >= 0.9
    assert report["scripts"]["dominant"] == {"Latin": 300 + sum(s < 300 for s in np.r_[exact_src, near_src]),
                                             "Han": 100 + sum(s >= 300 for s in np.r_[exact_src, near_src])}


def test_lsh_finds_what_brute_force_jaccard_finds():
    docs, *_ = planted_corpus(seed=1)
    docs = docs[:150] + docs[-20:]
    sets = [shingles(d) for d in docs]
    brute = {(i, j) for i in range(len(docs)) for j in range(i + 1, len(docs))
             if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= 0.8}
    found = {(i, j) for i, j, _ in near_duplicate_pairs(docs, threshold=0.8)}
    assert found <= brute  # every reported pair is confirmed exactly
    assert len(found) >= 0.9 * len(brute)


def test_empty_corrupt_boilerplate_outliers_and_scripts(tmp_path):
    fortune = tmp_path / "f"
    body = [f"saying number {i} about the {WORDS[i % len(WORDS)]}\n-- Anonymous Author" for i in range(60)]
    body += ["", "x" * 5000, "mixed 文字 text 中文字符很多很多", "Cyrillic текст здесь"]
    fortune.write_bytes("\n%\n".join(body).encode() + b"\n%\nbad bytes \xff\xfe here\n")
    records, problems = read_records(fortune, "fortune")
    report = audit_text(records, problems, listed=None)
    assert problems and "invalid UTF-8" in problems[0]["reason"]
    assert report["corrupt_records"]["ids"] == [len(records) - 1]
    assert report["empty_records"]["ids"] == [60]
    assert report["boilerplate"]["lines"][0] == {"line": "-- Anonymous Author", "records": 60}
    assert 61 in report["length"]["long_outliers"]
    assert 62 in report["scripts"]["mixed_ids"] and report["scripts"]["dominant"]["Cyrillic"] == 1


def test_jsonl_bad_lines_and_unreadable_files_are_findings_not_crashes(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "a fine record"}\nnot json\n{"title": "no text"}\n'
                                      '{"text": "another"}\n')
    records, problems = read_records(tmp_path / "c.jsonl", "jsonl")
    assert [p["id"] for p in problems] == [1, 2] and records[3] == "another"
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("one document")
    (folder / "b.txt").write_bytes(b"\xff\xfe\x00broken")
    records, problems = read_records(folder, "txt")
    assert len(records) == 2 and problems[0]["where"].endswith("b.txt")


def test_text_audit_cli(tmp_path, run_cli):
    docs, *_ = planted_corpus()
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    (tmp_path / "r.yaml").write_text(f"data:\n  source: jsonl\n  path: {tmp_path / 'c.jsonl'}\n")
    code, out, err = run_cli("data", "audit", tmp_path / "r.yaml", "--out", tmp_path / "a")
    assert code == 0, err
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["records"] == len(docs) and report["exact_duplicates"]["extra_copies"] == 20
    assert "Near-duplicate pairs" in (tmp_path / "a" / "audit.html").read_text()


def test_text_clean_keeps_the_test_split_and_trains(tmp_path, run_cli):
    from genlab.config import DataConfig
    from genlab.modalities.text.data import load_text_dataset

    docs, n, k, exact_src, near_src = planted_corpus()
    docs = docs + ["", "   "]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    (tmp_path / "r.yaml").write_text(f"data:\n  source: jsonl\n  path: {tmp_path / 'c.jsonl'}\n  block_size: 16\n")
    code, out, err = run_cli("data", "clean", tmp_path / "r.yaml", "--drop", "exact,near,empty", "--out",
                             tmp_path / "v")
    assert code == 0, err
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    removed = {o["op"]: set(o["removed_ids"]) for o in manifest["operations"]}
    parent = load_text_dataset(DataConfig(source="jsonl", path=str(tmp_path / "c.jsonl"), block_size=16))
    child = load_text_dataset(DataConfig(source="jsonl", path=str(tmp_path / "v" / "data.jsonl"), block_size=16))
    assert manifest["parent"]["fingerprint"] == parent.fingerprint
    assert manifest["fingerprint"] == child.fingerprint != parent.fingerprint
    assert child.corpus.split_documents("test") == parent.corpus.split_documents("test")  # the yardstick
    test_ids = {int(i) for i in parent.corpus.splits["test"]}  # record ids == document ids before the blanks
    assert removed["exact"] == set(range(n, n + k)) - test_ids
    assert removed["near"] == set(range(n + k, n + 2 * k)) - test_ids
    assert removed["empty"] == {len(docs) - 2, len(docs) - 1}
    assert len(child.corpus.documents) == len(docs) - sum(len(v) for v in removed.values())
    code, _, err = run_cli("train", tmp_path / "r.yaml", f"data.path={tmp_path / 'v' / 'data.jsonl'}",
                           "family=gpt", "model.layers=1", "model.width=16", "model.heads=2", "train.steps=3",
                           "train.batch_size=4", "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    recorded = json.loads((tmp_path / "runs" / "run" / "dataset.json").read_text())
    assert recorded["fingerprint"] == manifest["fingerprint"]  # the run records the version it trained on
    assert recorded["version"]["parent_fingerprint"] == parent.fingerprint
    assert [o["op"] for o in recorded["version"]["operations"]] == ["exact", "near", "empty"]
    code, _, err = run_cli("data", "clean", tmp_path / "r.yaml", "--drop", "labels", "--out", tmp_path / "w")
    assert code == 2 and "for text" in err


def test_jsonl_with_some_split_fields_is_an_error(tmp_path):
    from genlab.config import DataConfig
    from genlab.core.errors import GenlabError
    from genlab.modalities.text.data import load_text_dataset

    (tmp_path / "c.jsonl").write_text('{"text": "a b c d e f", "split": "train"}\n{"text": "g h i j k"}\n')
    try:
        load_text_dataset(DataConfig(source="jsonl", path=str(tmp_path / "c.jsonl")))
    except GenlabError as exc:
        assert "give every record one or none" in str(exc)
    else:
        raise AssertionError("mixed split fields were accepted")
