"""Image augmentation: the geometry is right, it is reproducible, defaults follow the data, and training with
it resumes bit-identically."""

import json

import torch
from conftest import tiny_config
from test_trainer import check_resume_is_bit_identical

from genlab.config import AugmentConfig, DataConfig
from genlab.modalities.image.augment import augment_batch, mirror_symmetry, suggest_augmentation
from genlab.modalities.image.data import load_image_dataset
from genlab.modalities.image.versions import augmented_version, version_config


def dot_images(n: int = 64, size: int = 21) -> torch.Tensor:
    x = torch.zeros(n, 1, size, size)
    x[:, :, size // 2, size // 2] = 1.0
    return x


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    mass = x.sum((1, 2, 3))
    return torch.stack([(x[:, 0] * ys).sum((1, 2)) / mass, (x[:, 0] * xs).sum((1, 2)) / mass], 1)


def test_shifts_stay_within_the_limit_and_vary():
    x = dot_images()
    out = augment_batch(x, AugmentConfig(translate=0.2), torch.Generator().manual_seed(0))
    moved = centre_of_mass(out) - centre_of_mass(x)
    assert moved.abs().max() <= 0.2 * 21 + 1e-4  # at most 20% of the side
    assert moved.abs().max() > 0.1 * 21 and moved.std() > 1.0  # and really moves, differently per image
    assert out.min() >= 0 and out.max() <= 1


def test_rotation_keeps_the_centre_and_flips_mirror():
    x = torch.zeros(32, 1, 21, 21)
    x[:, :, 10, 10:18] = 1.0  # a bar pointing right from the centre
    rotated = augment_batch(x, AugmentConfig(rotate=90), torch.Generator().manual_seed(0))
    radius = (centre_of_mass(rotated) - torch.tensor([10.0, 10.0])).norm(dim=1)
    assert torch.allclose(radius, (centre_of_mass(x) - torch.tensor([10.0, 10.0])).norm(dim=1), atol=0.6)
    flipped = augment_batch(x, AugmentConfig(flip=0.5), torch.Generator().manual_seed(0))
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and 5 < mirrored.sum() < 27


def test_augmentation_is_reproducible_and_off_by_default():
    x = torch.rand(8, 3, 16, 16)
    cfg = AugmentConfig(flip=0.5, translate=0.1, rotate=15, scale=0.1, noise=0.05)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, augment_batch(x, cfg, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, augment_batch(x, cfg, torch.Generator().manual_seed(4)))
    assert augment_batch(x, AugmentConfig(), None) is x


def test_defaults_follow_the_data():
    digits = load_image_dataset(DataConfig(source="digits"))
    cfg, why = suggest_augmentation(digits.images, digits.labels)
    assert cfg.flip == 0 and why["mirror_symmetry"] < 0.9  # a mirrored 3 is not a 3
    symmetric = ((digits.images.int() + digits.images.flip(-1).int()) // 2).to(torch.uint8)  # made symmetric
    assert mirror_symmetry(symmetric, digits.labels) > 0.99
    assert suggest_augmentation(symmetric, digits.labels)[0].flip == 0.5


def test_training_with_augmentation_resumes_bit_identically(tmp_path):
    train = {"steps": 12, "checkpoint_every": 5, "val_every": 4, "ema_decay": 0.9}
    check_resume_is_bit_identical(tiny_config("vae", train=train, data={
        "source": "digits", "augment": {"flip": 0.5, "translate": 0.1, "rotate": 10, "noise": 0.02}}), tmp_path)


def test_training_batches_are_augmented_but_validation_is_not():
    cfg = DataConfig(source="digits", augment=AugmentConfig(translate=0.15))
    plain = load_image_dataset(DataConfig(source="digits"))
    augmented = load_image_dataset(cfg)
    a = augmented.train_stream(32, 0).next(torch.Generator().manual_seed(0))
    b = plain.train_stream(32, 0).next(torch.Generator().manual_seed(0))
    assert torch.equal(a.y, b.y) and not torch.allclose(a.x, b.x)
    va, vb = next(iter(augmented.validation_batches(32))), next(iter(plain.validation_batches(32)))
    assert torch.equal(va.x, vb.x)


def test_augmented_version_and_cli(tmp_path, run_cli):
    parent = load_image_dataset(DataConfig(source="digits"))
    m = augmented_version(parent, tmp_path / "v", AugmentConfig(translate=0.1), copies=2)
    child = load_image_dataset(version_config(tmp_path / "v"))
    n_train = parent.splits["train"].numel()
    assert child.splits["train"].numel() == 3 * n_train and m["operations"][0]["count"] == 2 * n_train
    assert torch.equal(child.split_images("test"), parent.split_images("test"))
    assert torch.equal(child.labels[parent.images.shape[0]:], parent.split_labels("train").repeat(2))
    (tmp_path / "r.yaml").write_text("data:\n  source: digits\n")
    code, out, err = run_cli("data", "augment", tmp_path / "r.yaml", "--out", tmp_path / "w")
    assert code == 0, err
    assert "flips off" in out
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["operations"][0]["settings"]["flip"] == 0.0
    code, _, err = run_cli("data", "augment", tmp_path / "r.yaml", "--out", tmp_path / "w")
    assert code == 2 and "never overwritten" in err
    code, _, err = run_cli("train", tmp_path / "r.yaml", "data.augment.flip=1.5")
    assert code == 2 and "data.augment.flip" in err
