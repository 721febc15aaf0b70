"""Reader for the IDX format (MNIST / Fashion-MNIST files), plain or gzip, with errors that name the file."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from genlab.core.errors import GenlabError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise GenlabError(f"{path}: gzip stream is truncated or corrupt ({exc}); re-download the file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise GenlabError(f"{path}: not an IDX file (expected magic 0x0000<type><ndim> at the start)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise GenlabError(f"{path}: IDX header truncated (expected {ndim} dimension sizes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        raise GenlabError(
            f"{path}: IDX data is {got} bytes but the header {dims} says {expected}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def labels_path_for(images_path: Path) -> Path | None:
    """`train-images-idx3-ubyte.gz` -> `train-labels-idx1-ubyte.gz` when that file exists."""
    name = images_path.name.replace("images-idx3", "labels-idx1")
    candidate = images_path.with_name(name)
    return candidate if name != images_path.name and candidate.is_file() else None
