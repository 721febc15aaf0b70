"""Datasets: loaders per source, fixed seeded splits, fingerprints and descriptions."""

from genlab.data.images import Batch, BatchStream, ImageDataset, images_to_unit, load_image_dataset

__all__ = ["Batch", "BatchStream", "ImageDataset", "images_to_unit", "load_image_dataset"]
