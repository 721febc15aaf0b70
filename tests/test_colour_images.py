"""Colour image data: one transparency rule for every file, resize, the colour mode in describe, and the emoji
converter (on a tiny npm-shaped package built here)."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from genlab.config import DataConfig
from genlab.core.errors import GenlabError
from genlab.modalities.image.data import flatten_alpha, load_image_dataset
from genlab.modalities.image.emoji import convert


def _rgba(colour, alpha, size=8):
    a = np.zeros((size, size, 4), np.uint8)
    a[..., :3], a[..., 3] = colour, alpha
    return Image.fromarray(a, "RGBA")


def _folder(tmp_path, pictures: dict):
    for name, picture in pictures.items():
        target = tmp_path / "imgs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target)
    return tmp_path / "imgs"


def test_rgba_is_composited_over_the_background_not_dropped():
    half = _rgba((200, 0, 0), 128)
    out = np.asarray(flatten_alpha(half, (255, 255, 255))).astype(int)
    assert out.shape == (8, 8, 3)
    # alpha compositing: 200*a + 255*(1-a) with a = 128/255, and 0*a + 255*(1-a)
    assert abs(out[0, 0, 0] - round(200 * 128 / 255 + 255 * 127 / 255)) <= 1
    assert abs(out[0, 0, 1] - round(255 * 127 / 255)) <= 1
    clear = np.asarray(flatten_alpha(_rgba((10, 20, 30), 0), (0, 128, 0)))
    assert (clear == [0, 128, 0]).all()  # fully transparent: the background, whatever RGB the file stored


def test_palette_transparency_grey_alpha_and_mixed_sets(tmp_path):
    pal = Image.new("P", (8, 8))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.info["transparency"] = 0  # palette index 0 (red) is transparent
    out = np.asarray(flatten_alpha(pal, (255, 255, 255)))
    assert (out[0, 0] == [0, 0, 255]).all() and (out[1, 1] == [255, 255, 255]).all()
    grey_alpha = Image.fromarray(np.dstack([np.full((8, 8), 50, np.uint8), np.full((8, 8), 255, np.uint8)]), "LA")
    assert flatten_alpha(grey_alpha).mode == "L"
    assert flatten_alpha(grey_alpha, (0, 0, 255)).mode == "RGB"  # a coloured background makes it colour
    # a set of grey files is one channel; one colour file makes the whole set RGB (greys replicated)
    grey_only = _folder(tmp_path / "a", {"x.png": Image.new("L", (8, 8), 70), "y.png": grey_alpha})
    ds = load_image_dataset(DataConfig(source="folder", path=str(grey_only)))
    assert ds.shape == (1, 8, 8) and ds.describe()["colour"]["mode"] == "grey"
    mixed = _folder(tmp_path / "b", {"x.png": Image.new("L", (8, 8), 70), "y.png": _rgba((0, 0, 255), 255),
                                     "z.png": pal})
    ds = load_image_dataset(DataConfig(source="folder", path=str(mixed)))
    desc = ds.describe()
    assert ds.shape == (3, 8, 8)
    assert desc["colour"] == {"mode": "RGB", "file_modes": {"L": 1, "P": 1, "RGBA": 1}, "with_alpha": 2,
                              "background": [255, 255, 255]}
    assert (ds.images[0] == 70).all()  # x.png: grey replicated to three equal channels
    assert len(desc["pixels"]["channel_mean"]) == 3


def test_resize_and_background_option(tmp_path):
    folder = _folder(tmp_path, {"a.png": _rgba((255, 0, 0), 255, 64), "b.png": _rgba((0, 0, 0), 0, 64)})
    ds = load_image_dataset(DataConfig(source="folder", path=str(folder), resize=32, background="#000080"))
    assert ds.shape == (3, 32, 32)
    assert ds.images[1].reshape(3, -1)[:, 0].tolist() == [0, 0, 128]
    ds128 = load_image_dataset(DataConfig(source="folder", path=str(folder), resize=128))
    assert ds128.shape == (3, 128, 128) and ds128.images[0, 0].float().mean() == 255
    with pytest.raises(GenlabError, match="data.background"):
        DataConfig(source="folder", path=str(folder), background="not-a-colour").validate()


def _npm_package(tmp_path, vendor="google"):
    """A .tgz laid out like emoji-datasource-<vendor>: package.json, emoji.json, img/<vendor>/64/*.png."""
    table = [
        {"name": "GRINNING FACE", "short_name": "grinning", "unified": "1F600", "image": "1f600.png",
         "category": "Smileys & Emotion", "subcategory": "face-smiling", f"has_img_{vendor}": True,
         "skin_variations": {}},
        {"name": "WAVING HAND SIGN", "short_name": "wave", "unified": "1F44B", "image": "1f44b.png",
         "category": "People & Body", "subcategory": "hand", f"has_img_{vendor}": True,
         "skin_variations": {"1F3FB": {"unified": "1F44B-1F3FB", "image": "1f44b-1f3fb.png",
                                       f"has_img_{vendor}": True}}},
        {"name": "EMOJI MODIFIER FITZPATRICK TYPE-1-2", "short_name": "skin-tone-2", "unified": "1F3FB",
         "image": "1f3fb.png", "category": "Component", f"has_img_{vendor}": True},
    ]
    files = {"package/package.json": json.dumps({"name": f"emoji-datasource-{vendor}", "version": "1.0.0"}),
             "package/emoji.json": json.dumps(table), "package/LICENSE": "MIT"}
    for i, image in enumerate(["1f600.png", "1f44b.png", "1f44b-1f3fb.png", "1f3fb.png"]):
        buf = io.BytesIO()
        _rgba((40 * i, 100, 200), 0 if i == 0 else 255, 64).save(buf, "PNG")
        files[f"package/img/{vendor}/64/{image}"] = buf.getvalue()
    path = tmp_path / f"emoji-datasource-{vendor}-1.0.0.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_emoji_converter_lays_out_categories_and_keeps_names(tmp_path):
    summary = convert(_npm_package(tmp_path), tmp_path / "out")
    assert summary["images"] == 2 and summary["categories"] == {"Smileys & Emotion": 1, "People & Body": 1}
    records = [json.loads(line) for line in (tmp_path / "out" / "emoji.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["smileys-emotion/grinning.png", "people-body/wave.png"]
    assert records[0]["name"] == "GRINNING FACE" and records[0]["unified"] == "1F600"
    grin = np.asarray(Image.open(tmp_path / "out" / "smileys-emotion" / "grinning.png"))
    assert grin.shape == (64, 64, 3) and (grin == 255).all()  # fully transparent: the white background
    ds = load_image_dataset(DataConfig(source="folder", path=str(tmp_path / "out")))
    assert ds.class_names == ["people-body", "smileys-emotion"] and ds.shape == (3, 64, 64)
    assert sorted(ds.names()) == ["people-body/wave.png", "smileys-emotion/grinning.png"]
    with_tones = convert(_npm_package(tmp_path), tmp_path / "tones", skin_tones=True, background="black")
    assert with_tones["images"] == 3 and (tmp_path / "tones" / "people-body" / "wave-1f3fb.png").is_file()
    assert (np.asarray(Image.open(tmp_path / "tones" / "smileys-emotion" / "grinning.png")) == 0).all()


def test_emoji_converter_errors(tmp_path):
    with pytest.raises(GenlabError, match="not found"):
        convert(tmp_path / "missing.tgz", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="not an emoji-datasource"):
        convert(tmp_path / "empty", tmp_path / "out")
