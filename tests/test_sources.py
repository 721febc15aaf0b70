"""`genlab data audit PATH|NAME`: the loader is inferred from what the path holds."""

import numpy as np
import pytest
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.modalities import infer_data
from genlab.pipeline import load_target


def test_each_kind_of_path_gets_its_loader(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte.gz").write_bytes(b"")
    images = tmp_path / "images" / "cats"
    images.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "a.png")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("hello")
    (tmp_path / "d.npz").write_bytes(b"")
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "fortunes").write_text("one\n%\ntwo\n")
    (tmp_path / "book").write_text("just text\n")
    expected = {"idx": "idx", "images": "folder", "docs": "txt", "d.npz": "npz", "c.jsonl": "jsonl",
                "fortunes": "fortune", "book": "txt"}
    for name, source in expected.items():
        assert infer_data(str(tmp_path / name)) == {"source": source, "path": str(tmp_path / name)}
    assert infer_data("digits") == {"source": "digits"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GenlabError, match="no IDX files, images or .txt"):
        infer_data(str(empty))
    with pytest.raises(GenlabError, match="neither a recipe"):
        infer_data(str(tmp_path / "missing"))


def test_overrides_apply_to_a_path_target(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n')
    cfg = load_target(tmp_path / "c.jsonl", ["data.block_size=32"])
    assert cfg.data.source == "jsonl" and cfg.data.block_size == 32
