"""The emoji image sets of the npm registry (`emoji-datasource-google`, `emoji-datasource-twitter`) as a
recipe-ready image folder: real colour pictures that exist offline, with labels (their category) and names.

    npm pack emoji-datasource-google@16.0.0
    python -m genlab.modalities.image.emoji emoji-datasource-google-16.0.0.tgz data/emoji/google-64

The package (the .tgz or its unpacked folder) holds `emoji.json` (name, category, image file of each emoji) and
64x64 RGBA PNGs under `img/<vendor>/64/`. The converter composites each on a background colour (the loader's
rule, `data.flatten_alpha`), writes `OUT/<category>/<short_name>.png` (folders are labels to the folder loader)
and `OUT/emoji.jsonl` with one record per image (its file, name, codepoints, category), so the same emoji can be
found in another vendor's set by its file name (style transfer, editing). Skin-tone variants are left out
unless asked for (they repeat the base image with another skin colour), and so is the `Component` category
(skin-tone swatches and hair parts, not emoji). `make emoji` fetches both packages and converts them.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
from pathlib import Path

from genlab.core.errors import GenlabError

SKIPPED_CATEGORIES = {"Component"}


class _Package:
    """Read files from an npm package: a .tgz (members under `package/`) or an unpacked folder."""

    def __init__(self, path: Path):
        self.path = path
        self._tar = tarfile.open(path, "r:gz") if path.is_file() else None
        self._members = {m.name.removeprefix("package/"): m for m in self._tar.getmembers()} if self._tar else None
        self._root = None if self._tar else (path / "package" if (path / "package").is_dir() else path)

    def read(self, name: str) -> bytes | None:
        if self._tar is not None:
            member = self._members.get(name)
            return None if member is None else self._tar.extractfile(member).read()
        file = self._root / name
        return file.read_bytes() if file.is_file() else None


def slug(text: str) -> str:
    """'Smileys & Emotion' -> 'smileys-emotion': a folder name on every file system."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def convert(package: str | Path, out: str | Path, background: str = "white", size: int = 64,
            skin_tones: bool = False) -> dict:
    """Write the package's images as an image folder at `out`; returns a summary (counts per category)."""
    from PIL import Image, ImageColor

    from genlab.modalities.image.data import flatten_alpha

    package, out = Path(package), Path(out)
    if not package.exists():
        raise GenlabError(f"{package} not found (npm pack emoji-datasource-google makes the .tgz)")
    pkg = _Package(package)
    meta = json.loads(pkg.read("package.json") or b"{}")
    vendor = str(meta.get("name", "")).removeprefix("emoji-datasource-")
    table = pkg.read("emoji.json")
    if not vendor or table is None:
        raise GenlabError(f"{package} is not an emoji-datasource-<vendor> package (no package.json / emoji.json)")
    rgb = ImageColor.getrgb(background)[:3]
    records, missing, taken = [], 0, set()
    for emoji in json.loads(table):
        if emoji["category"] in SKIPPED_CATEGORIES or not emoji.get(f"has_img_{vendor}"):
            continue
        variants = [(emoji["short_name"], emoji["image"], emoji["unified"])]
        if skin_tones:
            variants += [(f"{emoji['short_name']}-{key.lower()}", v["image"], v["unified"])
                         for key, v in sorted((emoji.get("skin_variations") or {}).items())
                         if v.get(f"has_img_{vendor}")]
        for name, image, unified in variants:
            data = pkg.read(f"img/{vendor}/{size}/{image}")
            if data is None:
                missing += 1
                continue
            with Image.open(io.BytesIO(data)) as im:
                picture = flatten_alpha(im, rgb).convert("RGB")
            file = f"{slug(emoji['category'])}/{slug(name) or 'emoji'}.png"
            if file in taken:  # '+1' and '-1' share a slug: the codepoints tell them apart
                file = file.removesuffix(".png") + f"-{unified.lower()}.png"
            taken.add(file)
            target = out / file
            target.parent.mkdir(parents=True, exist_ok=True)
            picture.save(target, optimize=True)
            records.append({"file": file, "name": emoji.get("name"), "short_name": name, "unified": unified,
                            "category": emoji["category"], "subcategory": emoji.get("subcategory"),
                            "vendor": vendor})
    if not records:
        raise GenlabError(f"{package}: no {size}px images of {vendor} found under img/{vendor}/{size}/")
    (out / "emoji.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    licence = pkg.read("LICENSE")
    if licence:
        (out / "LICENSE").write_bytes(licence)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
    summary = {"vendor": vendor, "version": meta.get("version"), "images": len(records), "size": size,
               "background": list(rgb), "missing_files": missing, "categories": counts}
    (out / "SOURCE.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genlab.modalities.image.emoji", description=__doc__.split("\n")[0])
    parser.add_argument("package", help="emoji-datasource-<vendor>-VERSION.tgz (npm pack) or its unpacked folder")
    parser.add_argument("out", help="the image folder to write (category sub-folders)")
    parser.add_argument("--background", default="white", help="colour transparent pixels are composited over")
    parser.add_argument("--size", type=int, default=64, choices=(16, 20, 32, 64), help="the package's image size")
    parser.add_argument("--skin-tones", action="store_true", help="also write each skin-tone variant")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.package, args.out, args.background, args.size, args.skin_tones)
    except GenlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
