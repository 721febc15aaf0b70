"""Datasets: loaders per source, fixed seeded splits, fingerprints and descriptions."""

from __future__ import annotations

from pathlib import Path

from genlab.data.images import Batch, BatchStream, ImageDataset, images_to_unit, load_image_dataset
from genlab.data.text import TEXT_FORMATS, TextDataset, load_text_dataset


def load_dataset(cfg, run_dir: Path | None = None) -> ImageDataset | TextDataset:
    """The dataset of a DataConfig, images or text; a run directory supplies its saved tokenizer."""
    if cfg.source in TEXT_FORMATS:
        return load_text_dataset(cfg, run_dir)
    if cfg.source == "table":
        from genlab.tables.dataset import load_table_dataset

        return load_table_dataset(cfg, run_dir)
    return load_image_dataset(cfg)


__all__ = ["Batch", "BatchStream", "ImageDataset", "TextDataset", "images_to_unit", "load_dataset",
           "load_image_dataset"]
