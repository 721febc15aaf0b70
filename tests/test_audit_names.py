"""Audit findings name things a user can open (files, file and line, `data.npz[31]`), audit.html shows them
(thumbnails, text), and `genlab data clean --drop-ids FILE` removes exactly the items a list names."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error
from PIL import Image

from genlab.config import DataConfig
from genlab.modalities.image.data import load_image_dataset
from genlab.modalities.image.versions import version_config


@pytest.fixture
def image_folder(tmp_path):
    """Two class folders of distinct noise images, with cat/c03.png copied as dog/copy.png and cat/again.png."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / name / f"{name[0]}{i:02d}.png")
    copy = (root / "cat" / "c03.png").read_bytes()
    (root / "dog" / "copy.png").write_bytes(copy)
    (root / "cat" / "again.png").write_bytes(copy)
    return root


def test_image_findings_name_files_and_show_thumbnails(image_folder, tmp_path, run_cli):
    code, _, err = run_cli("data", "audit", image_folder, "--out", tmp_path / "a")
    assert code == 0, err
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    [group] = report["exact_duplicates"]["first_groups"]  # ids stay, for scripts
    assert sorted(report["names"][str(i)] for i in group) == ["cat/again.png", "cat/c03.png", "dog/copy.png"]
    page = (tmp_path / "a" / "audit.html").read_text()
    assert "cat/again.png" in page and "dog/copy.png" in page
    duplicates_row = next(r for r in page.split("<tr>") if r.startswith("<td>Exact duplicate copies"))
    assert duplicates_row.count("<img") == 3 and "data:image/png;base64," in duplicates_row
    worst = report["label_issues"]["worst"]
    if worst:  # suspected label errors are captioned with the given and the predicted label
        w = worst[0]
        assert f"{report['names'][str(w['id'])]}: {w['given']} -&gt; {w['suggested']}" in page


def test_unreadable_images_are_named_like_other_findings(image_folder, tmp_path, run_cli):
    """Relative to the audited folder, as `names` are, so a listing reads the same wherever the folder lives."""
    (image_folder / "dog" / "broken.png").write_text("not an image")
    code, _, err = run_cli("data", "audit", image_folder, "--out", tmp_path / "a")
    assert code == 0, err
    [item] = json.loads((tmp_path / "a" / "audit.json").read_text())["unreadable"]["items"]
    assert item["file"] == "dog/broken.png"
    assert "dog/broken.png" in (tmp_path / "a" / "audit.html").read_text()


def _write_idx(path, array):
    path.write_bytes(bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
                     + array.astype(np.uint8).tobytes())


def test_array_datasets_name_items_by_file_and_row(tmp_path):
    rng = np.random.default_rng(1)
    _write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (5, 4, 4)))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 4, 4)))
    idx = load_image_dataset(DataConfig(source="idx", path=str(tmp_path)))
    assert idx.item_names[4] == "train-images-idx3-ubyte[4]" and idx.item_names[5] == "t10k-images-idx3-ubyte[0]"
    np.savez(tmp_path / "data.npz", images=rng.integers(0, 256, (40, 4, 4), dtype=np.uint8))
    assert load_image_dataset(DataConfig(source="npz", path=str(tmp_path / "data.npz"))).item_names[31] == \
        "data.npz[31]"
    assert load_image_dataset(DataConfig(source="digits", limit=50)).item_names[-1] == "digits[49]"


def test_text_findings_name_file_and_line(tmp_path, run_cli):
    lines = [json.dumps({"text": f"record number {i} says something different about item {i * 7}"}) for i in range(30)]
    lines[3] = json.dumps({"text": "<b>the same</b> words repeated " * 3})
    lines.insert(10, "")  # blank line: line numbers are the file's, not record positions
    lines.insert(20, lines[3])
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli("data", "audit", tmp_path / "c.jsonl", "--out", tmp_path / "a")
    assert code == 0, err
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    [group] = report["exact_duplicates"]["first_groups"]
    assert [report["names"][str(i)] for i in group] == ["c.jsonl:4", "c.jsonl:21"]
    page = (tmp_path / "a" / "audit.html").read_text()
    assert "c.jsonl:21" in page and "&lt;b&gt;the same&lt;/b&gt; words" in page and "<b>the same" not in page

    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    for i in range(6):
        (docs / f"d{i}.txt").write_text(f"document {i} with its own distinct words number {i * 13}")
    (docs / "sub" / "copy.txt").write_text("document 2 with its own distinct words number 26")
    code, _, err = run_cli("data", "audit", docs, "--out", tmp_path / "b")
    assert code == 0, err
    report = json.loads((tmp_path / "b" / "audit.json").read_text())
    [group] = report["exact_duplicates"]["first_groups"]
    assert [report["names"][str(i)] for i in group] == ["d2.txt", "sub/copy.txt"]


def test_fortune_records_are_named_by_their_first_line(tmp_path):
    from genlab.modalities.text.audit import read_records

    (tmp_path / "f").write_text("one\ntwo\n%\nthree\n%\n\nfour\nfive\n")
    wheres = []
    records, _ = read_records(tmp_path / "f", "fortune", wheres=wheres)
    assert records == ["one\ntwo", "three", "four\nfive"] and wheres == ["f:1", "f:4", "f:7"]


def test_drop_ids_removes_exactly_the_named_images_and_never_the_test_split(image_folder, tmp_path, run_cli):
    parent = load_image_dataset(DataConfig(source="folder", path=str(image_folder)))
    names = parent.item_names
    test = parent.splits["test"].tolist()
    train = parent.splits["train"].tolist()
    wanted = [train[0], train[1], train[2], test[0]]
    (tmp_path / "drop.txt").write_text(f"# from audit.html\n{names[train[0]]}\n{train[1]}\n\n{names[train[2]]}\n"
                                       f"{names[test[0]]}\n")
    code, _, err = run_cli("data", "clean", image_folder, "--drop-ids", tmp_path / "drop.txt", "--out", tmp_path / "v")
    assert code == 0, err
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    [op] = manifest["operations"]  # --drop-ids alone: no audit fixes
    assert op["op"] == "drop-ids" and op["removed_ids"] == sorted(wanted[:3]) and op["kept_test_ids"] == [test[0]]
    assert op["removed_names"] == [names[i] for i in sorted(wanted[:3])]
    child = load_image_dataset(version_config(tmp_path / "v"))
    keep = [i for i in range(parent.images.shape[0]) if i not in wanted[:3]]
    assert torch.equal(child.images, parent.images[keep]) and torch.equal(child.labels, parent.labels[keep])
    assert torch.equal(child.split_images("test"), parent.split_images("test"))

    (tmp_path / "bad.txt").write_text(f"{names[0]}\ncat/missing.png\nalso/missing.png\n")
    code, _, err = run_cli("data", "clean", image_folder, "--drop-ids", tmp_path / "bad.txt", "--out", tmp_path / "w")
    assert_one_line_error(code, err, "cat/missing.png", "line 2")
    assert "also/missing" not in err and not (tmp_path / "w").exists()


def test_drop_ids_on_text_by_place_and_by_id(tmp_path, run_cli):
    from genlab.modalities.text.data import load_text_dataset

    docs = [f"record {i} with a few words of its own, number {i * 11}" for i in range(40)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    parent = load_text_dataset(DataConfig(source="jsonl", path=str(tmp_path / "c.jsonl")))
    test = sorted(int(i) for i in parent.corpus.splits["test"])
    train = sorted(int(i) for i in parent.corpus.splits["train"])
    (tmp_path / "drop.txt").write_text(f"c.jsonl:{train[0] + 1}\n{train[1]}\nc.jsonl:{test[0] + 1}\n")
    code, _, err = run_cli("data", "clean", tmp_path / "c.jsonl", "--drop-ids", tmp_path / "drop.txt",
                           "--out", tmp_path / "v")
    assert code == 0, err
    [op] = json.loads((tmp_path / "v" / "manifest.json").read_text())["operations"]
    assert op["removed_ids"] == train[:2] and op["kept_test_ids"] == [test[0]]
    kept = [json.loads(line)["text"] for line in (tmp_path / "v" / "data.jsonl").read_text().splitlines()]
    assert kept == [d for i, d in enumerate(docs) if i not in train[:2]]
    child = load_text_dataset(DataConfig(source="jsonl", path=str(tmp_path / "v" / "data.jsonl")))
    assert child.corpus.split_documents("test") == parent.corpus.split_documents("test")

    (tmp_path / "bad.txt").write_text("c.jsonl:999\n")
    code, _, err = run_cli("data", "clean", tmp_path / "c.jsonl", "--drop-ids", tmp_path / "bad.txt",
                           "--out", tmp_path / "w")
    assert_one_line_error(code, err, "c.jsonl:999")


def test_tables_still_refuse_clean(tmp_path, run_cli):
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n3,z\n")
    (tmp_path / "drop.txt").write_text("1\n")
    code, _, err = run_cli("data", "clean", tmp_path / "t.csv", "--drop-ids", tmp_path / "drop.txt",
                           "--out", tmp_path / "v")
    assert_one_line_error(code, err, "works on images and text")
