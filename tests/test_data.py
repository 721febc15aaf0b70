import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.config import DataConfig
from genlab.core.batch import BatchStream
from genlab.core.errors import GenlabError
from genlab.modalities.image.data import load_image_dataset


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 6, 5)), gz=True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 3, n), gz=True)
    return tmp_path


def test_digits_dataset():
    ds = load_image_dataset(DataConfig())
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == torch.uint8
    assert int(ds.images.max()) == 255
    sizes = {k: v.numel() for k, v in ds.splits.items()}
    assert sum(sizes.values()) == 1797
    all_idx = torch.cat(list(ds.splits.values()))
    assert all_idx.unique().numel() == 1797  # disjoint and complete
    again = load_image_dataset(DataConfig())
    assert again.fingerprint == ds.fingerprint
    assert torch.equal(again.splits["val"], ds.splits["val"])
    desc = ds.describe()
    assert desc["num_images"] == 1797 and sum(desc["classes"].values()) == 1797
    assert 0 < desc["pixels"]["mean"] < 1


def test_idx_folder_keeps_its_test_split(idx_folder):
    ds = load_image_dataset(DataConfig(source="idx", path=str(idx_folder)))
    assert ds.images.shape == (80, 1, 6, 5)
    assert ds.splits["test"].tolist() == list(range(60, 80))
    assert ds.splits["train"].numel() + ds.splits["val"].numel() == 60
    plain = idx_folder / "plain-images-idx3-ubyte"
    write_idx(plain, np.zeros((4, 6, 5)))
    one = load_image_dataset(DataConfig(source="idx", path=str(plain), val_fraction=0.25, test_fraction=0.25))
    assert one.labels is None and one.images.shape[0] == 4


def test_fingerprint_changes_with_content(idx_folder, tmp_path):
    a = load_image_dataset(DataConfig(source="idx", path=str(idx_folder)))
    b = load_image_dataset(DataConfig(source="idx", path=str(idx_folder), limit=70))
    assert a.fingerprint != b.fingerprint


def test_truncated_gzip_names_the_file(idx_folder):
    path = idx_folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(GenlabError, match="train-images-idx3-ubyte.gz: gzip stream is truncated"):
        load_image_dataset(DataConfig(source="idx", path=str(idx_folder)))


def test_truncated_idx_says_what_was_expected(tmp_path):
    path = tmp_path / "x-images-idx3-ubyte"
    write_idx(path, np.zeros((10, 4, 4)))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(GenlabError, match=r"153 bytes but the header \(10, 4, 4\) says 160"):
        load_image_dataset(DataConfig(source="idx", path=str(path)))


def test_label_count_mismatch(idx_folder):
    write_idx(idx_folder / "train-labels-idx1-ubyte.gz", np.zeros(59), gz=True)
    with pytest.raises(GenlabError, match="59 labels for 60 images"):
        load_image_dataset(DataConfig(source="idx", path=str(idx_folder)))


def test_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.random.default_rng(0).random((30, 7, 7, 3)), labels=np.arange(30) % 2)
    ds = load_image_dataset(DataConfig(source="npz", path=str(path)))
    assert ds.images.shape == (30, 3, 7, 7) and ds.num_classes == 2
    np.savez(path, images=np.zeros((30, 7, 7), np.uint8), labels=np.zeros(29, np.int64))
    with pytest.raises(GenlabError, match="29 labels for 30 images"):
        load_image_dataset(DataConfig(source="npz", path=str(path)))
    path.write_bytes(b"not a zip")
    with pytest.raises(GenlabError, match="not a readable .npz"):
        load_image_dataset(DataConfig(source="npz", path=str(path)))


def test_empty_npz_is_an_error(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, images=np.zeros((0, 7, 7), np.uint8))
    with pytest.raises(GenlabError, match="empty"):
        load_image_dataset(DataConfig(source="npz", path=str(path)))


def _save(path, size, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, np.uint8)).save(path)


def test_folder_with_classes(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(5):
            _save(tmp_path / cls / f"{i}.png", (6, 6), value=10 * i)
    ds = load_image_dataset(DataConfig(source="folder", path=str(tmp_path)))
    assert ds.images.shape == (10, 1, 6, 6)
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0] * 5 + [1] * 5


def test_folder_mixed_sizes_and_resize(tmp_path):
    _save(tmp_path / "a.png", (6, 6))
    _save(tmp_path / "b.png", (8, 5))
    with pytest.raises(GenlabError, match="mixed sizes.*6x6.*8x5.*data.resize"):
        load_image_dataset(DataConfig(source="folder", path=str(tmp_path)))
    for i in range(8):
        _save(tmp_path / f"c{i}.png", (6, 6))
    ds = load_image_dataset(DataConfig(source="folder", path=str(tmp_path), resize=4))
    assert ds.images.shape == (10, 1, 4, 4)


def test_unreadable_image_is_named(tmp_path):
    _save(tmp_path / "good.png", (6, 6))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(GenlabError, match="cannot read image .*broken.png"):
        load_image_dataset(DataConfig(source="folder", path=str(tmp_path)))


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(GenlabError, match="data path not found"):
        load_image_dataset(DataConfig(source="idx", path=str(tmp_path / "nope")))
    with pytest.raises(GenlabError, match="no image files"):
        load_image_dataset(DataConfig(source="folder", path=str(tmp_path)))
    with pytest.raises(GenlabError, match="needs data.path"):
        load_image_dataset(DataConfig(source="npz"))


def test_batch_stream_resumes_exactly():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    a = BatchStream(images, None, 8, seed=3)
    noise = torch.Generator().manual_seed(0)
    seen = [a.next(noise).x.flatten() for _ in range(9)]  # crosses an epoch boundary (6 batches per epoch)
    b = BatchStream(images, None, 8, seed=3)
    for _ in range(4):
        b.next(noise)
    c = BatchStream(images, None, 8, seed=3)
    c.load_state(b.state())
    for i in range(4, 9):
        assert torch.equal(c.next(noise).x.flatten(), seen[i])
    epoch0 = torch.cat(seen[:6])
    assert epoch0.unique().numel() == 48  # no repeats within an epoch
