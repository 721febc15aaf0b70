"""Image editing: RePaint inpainting, SDEdit img2img, DDIM inversion, the cyclegan family, `genlab edit` and the
/edits endpoints; tiny models, untrained where invariants are all that is checked."""

import base64
import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, tiny_config
from fastapi.testclient import TestClient
from PIL import Image
from test_trainer import check_resume_is_bit_identical

from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.diffusion.editing import (
    ddim_decode,
    ddim_invert,
    img2img,
    img2img_timesteps,
    inpaint,
    inversion_timesteps,
    jump_walk,
)
from genlab.diffusion.schedule import NoiseSchedule, sampling_timesteps
from genlab.modalities.image.edit import read_image, read_mask, shape_mask
from genlab.models.base import DataSpec
from genlab.models.cyclegan import CycleGAN, cycle_loss, identity_loss
from genlab.models.diffusion import Diffusion
from genlab.pipeline import train_config
from genlab.serve.app import create_app
from genlab.serve.keys import KeyStore
from genlab.serve.limits import Limits
from genlab.train.trainer import build_model


def _diffusion(**model) -> Diffusion:
    torch.manual_seed(0)
    return build_model(tiny_config("diffusion", model={"conditional": False, **model}), DataSpec(1, 8, 8, 10)).eval()


def _scrambled(model: Diffusion) -> Diffusion:
    """The U-Net's zero-initialised output layer made random: an untrained network whose eps is not 0."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.net.conv_out.weight.copy_(torch.randn(model.net.conv_out.weight.shape, generator=g) * 0.05)
    return model


def _gaussian_denoiser(schedule, mu=0.3, s=0.5):
    """The exact denoiser of data N(mu, s^2) per pixel: smooth, so DDIM's ODE is well behaved."""
    def denoise(x, t):
        a = float(schedule.alphas_cumprod[t])
        var = a * s * s + 1 - a
        x0 = mu + math.sqrt(a) * s * s / var * (x - math.sqrt(a) * mu)
        return x0, (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    return denoise


# -- sampler level --------------------------------------------------------------------------------------------
def test_jump_walk_is_plain_without_jumps_and_resamples_with_them():
    assert jump_walk(5, 2, 1) == [(i, i + 1) for i in range(5)]
    moves = jump_walk(10, 3, 3)
    assert moves[-1] == (9, 10) and sum(b < a for a, b in moves) == 3 * 2  # positions 3, 6, 9 jump back twice
    assert sum(b > a for a, b in moves) == 10 + 3 * 2 * 3
    pos = 0
    for a, b in moves:
        assert a == pos and (b == a + 1 or b == a - 3)
        pos = b


@pytest.mark.parametrize("jumps", [1, 3])
def test_inpaint_keeps_the_known_region_and_fills_the_rest(jumps):
    schedule = NoiseSchedule.make("cosine", 50)
    known = torch.rand(2, 1, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1
    out = inpaint(schedule, _gaussian_denoiser(schedule), known, mask, sampling_timesteps(50, 10),
                  torch.Generator().manual_seed(0), jump_length=3, jump_n_sample=jumps)
    assert torch.equal(out[..., :4], known[..., :4])
    filled = out[..., 4:]
    assert abs(float(filled.mean()) - 0.3) < 0.25 and float(filled.std()) > 0.1  # drawn from the data model


def test_img2img_strength_zero_is_the_input_and_timesteps_follow_strength():
    schedule = NoiseSchedule.make("cosine", 100)
    x = torch.rand(2, 1, 4, 4)

    def never(x, t):
        raise AssertionError("no network call at strength 0")

    assert torch.equal(img2img(schedule, never, x, 0.0, 10, None), x)
    ts = img2img_timesteps(100, 0.5, 20)
    assert ts[0] == 49 and len(ts) == 10 and torch.all(ts[1:] < ts[:-1]) and ts[-1] >= 0
    assert img2img_timesteps(100, 1.0, 20)[0] == 99 and len(img2img_timesteps(100, 0.01, 20)) == 1
    with pytest.raises(GenlabError, match="strength"):
        img2img_timesteps(100, 1.5, 20)


def test_ddim_inversion_round_trip_on_a_smooth_denoiser():
    schedule = NoiseSchedule.make("cosine", 200)
    denoise = _gaussian_denoiser(schedule)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    errors = {}
    for steps, refine in ((10, 0), (50, 0), (200, 0), (50, 2)):
        ts = inversion_timesteps(schedule, steps)
        assert float(schedule.alphas_cumprod[ts[0]]) >= 1e-3 and len(ts) == min(steps, 195)  # abar_195 < 1e-3
        x_t = ddim_invert(schedule, denoise, x0, ts, refine)
        errors[steps, refine] = float((ddim_decode(schedule, denoise, x_t, ts) - x0).abs().max())
    # measured (max |error| over 3 seeds): plain 0.26 / 0.059 / 0.0155 at 10 / 50 / 195 steps (first order in
    # the step), and 0.0012 at 50 steps with 2 fixed-point refinements
    assert errors[10, 0] > errors[50, 0] > errors[200, 0]
    assert errors[50, 0] < 0.1 and errors[200, 0] < 0.03 and errors[50, 2] < 0.005, errors


# -- the diffusion model ----------------------------------------------------------------------------------------
def test_model_inpaint_pastes_the_known_pixels_back_exactly():
    model = _scrambled(_diffusion())
    x = torch.rand(2, 1, 8, 8)
    known = shape_mask("centre:0.25", (8, 8))
    out = model.inpaint(x, known, steps=5, jump_length=2, jump_n_sample=2, seed=3)
    keep = known.expand_as(x).bool()
    assert torch.equal(out[keep], x[keep]) and not torch.equal(out[~keep], x[~keep])
    assert torch.equal(out, model.inpaint(x, known, steps=5, jump_length=2, jump_n_sample=2, seed=3))  # seeded
    with pytest.raises(GenlabError, match="must be N x 1x8x8"):
        model.inpaint(torch.rand(1, 3, 8, 8), known)
    with pytest.raises(GenlabError, match="mask must be 8x8"):
        model.inpaint(x, torch.ones(1, 1, 4, 4))


def test_model_img2img_strength_zero_returns_the_input_without_the_network(monkeypatch):
    model = _diffusion()
    x = torch.rand(2, 1, 8, 8)
    monkeypatch.setattr(model, "net", None)  # any network call would fail
    assert torch.equal(model.img2img(x, 0.0), x)


def test_model_img2img_runs_and_is_seeded():
    model = _scrambled(_diffusion())
    x = torch.rand(2, 1, 8, 8)
    a, b = model.img2img(x, 0.6, steps=5, seed=1), model.img2img(x, 0.6, steps=5, seed=1)
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1


def test_model_ddim_inversion_reconstructs_the_input():
    model = _scrambled(_diffusion())  # a random eps: the hard case for inversion's approximation
    x = torch.rand(3, 1, 8, 8)
    x_t = model.invert(x, steps=48, refine=3)
    back = model.decode_from_noise(x_t, steps=48)
    # measured on this model: max 0.0036, mean 0.0007 (refine 0: max 0.16, mean 0.04)
    assert float((back - x).abs().max()) < 0.02 and float((back - x).abs().mean()) < 0.005
    assert 0.2 < float(x_t.std()) < 2  # noise-like


def test_latent_mask_counts_a_cell_known_only_when_all_its_pixels_are():
    known = torch.ones(1, 1, 8, 8)
    known[..., 3, 5] = 0
    stub = SimpleNamespace(latent=True, shape=(4, 2, 2))
    cells = Diffusion.latent_mask(stub, known)
    assert cells.shape == (1, 1, 2, 2) and cells.flatten().tolist() == [1.0, 0.0, 1.0, 1.0]


def test_families_that_cannot_edit_say_what_can():
    vae = build_model(tiny_config("vae"), DataSpec(1, 8, 8, 10))
    with pytest.raises(GenlabError, match="cannot inpaint.*diffusion run.*cyclegan"):
        vae.inpaint(torch.rand(1, 1, 8, 8), torch.ones(1, 1, 8, 8))
    with pytest.raises(GenlabError, match="cannot transfer"):
        vae.transfer(torch.rand(1, 1, 8, 8))


# -- cyclegan --------------------------------------------------------------------------------------------------
def _cyclegan_config(**train):
    return config_from_dict({
        "name": "cg", "family": "cyclegan", "data": {"source": "digits"},
        "model": {"base_channels": 4, "downsamples": 1, "res_blocks": 1, "discriminator_channels": 4,
                  "discriminator_layers": 2},
        "train": {"steps": 6, "batch_size": 16, "val_every": 0, "checkpoint_every": 0, "log_every": 2, **train}})


def test_cycle_and_identity_losses_by_hand():
    a, b = torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4)
    same = torch.nn.Identity()
    assert float(cycle_loss(same, same, a, b)) == 0 and float(identity_loss(same, same, a, b)) == 0

    class Shift(torch.nn.Module):
        def __init__(self, by):
            super().__init__()
            self.by = by

        def forward(self, x):
            return x + self.by

    up, down = Shift(0.5), Shift(-0.25)  # G_AB adds 0.5, G_BA takes 0.25
    assert float(cycle_loss(up, down, a, b)) == pytest.approx(0.25 + 0.25)  # both cycles end 0.25 high
    assert float(identity_loss(up, down, a, b)) == pytest.approx(0.5 + 0.25)
    assert float(cycle_loss(up, down, a, None)) == pytest.approx(0.25)


def test_cyclegan_loss_weights_and_defaults():
    model = build_model(_cyclegan_config(), DataSpec(1, 8, 8, 10))
    assert model.config.identity_weight == 5.0  # 0.5 * lambda_cycle
    assert [p.name for p in model.phases()] == ["generators", "discriminators"]
    a, b = torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(3, 1, 8, 8) * 2 - 1
    terms = model.generator_terms(a, b)
    expected = terms["g_adversarial"] + 10 * terms["cycle"] + 5 * terms["identity"]
    assert torch.allclose(terms["g_loss"], expected)
    with pytest.raises(GenlabError, match="translates images"):
        model.sample(2)
    with pytest.raises(GenlabError, match="two domains"):
        CycleGAN(model.config, DataSpec(1, 8, 8, 0))


def test_cyclegan_trains_and_resumes_bit_identically(tmp_path):
    check_resume_is_bit_identical(_cyclegan_config(steps=12, checkpoint_every=5, ema_decay=0.9, val_every=4),
                                  tmp_path)


# -- the CLI and the server -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    diffusion, _ = train_config(tiny_config("diffusion", name="dd"), root)
    cyclegan, _ = train_config(_cyclegan_config(), root)
    vae, _ = train_config(tiny_config("vae", name="vv"), root)
    return diffusion.root, cyclegan.root, vae.root


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _digit(seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def test_reading_images_and_masks():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: white after flatten_alpha
    x = read_image(_png(rgba), 1, (8, 8))
    assert x.shape == (1, 1, 8, 8) and float(x.min()) == 1.0
    with pytest.raises(GenlabError, match="4x4 pixels; the run's images are 8x8"):
        read_image(_png(_digit(size=4)), 1, (8, 8))
    assert read_image(_png(_digit(size=4)), 3, (8, 8), resize=True).shape == (1, 3, 8, 8)
    with pytest.raises(GenlabError, match="not a readable image"):
        read_image(b"\x89PNG\r\n\x1a\nnot really", 1, (8, 8))
    with pytest.raises(GenlabError, match="at most 16 pixels"):
        read_image(_png(_digit()), 1, (8, 8), max_pixels=16)
    white = np.zeros((8, 8), np.uint8)
    white[2:4, 2:4] = 255
    known = read_mask(_png(white), (8, 8))
    assert known.shape == (1, 1, 8, 8) and float(known.sum()) == 60 and float(known[0, 0, 2, 2]) == 0
    with pytest.raises(GenlabError, match="must match the image"):
        read_mask(_png(white[:4, :4]), (8, 8))
    assert float(shape_mask("box:0,0,2,4", (8, 8)).sum()) == 64 - 8
    assert float(shape_mask("centre:0.25", (8, 8)).sum()) == 64 - 16
    strokes = shape_mask("strokes:3", (16, 16))
    assert torch.equal(strokes, shape_mask("strokes:3", (16, 16))) and 0 < float(strokes.sum()) < 256
    with pytest.raises(GenlabError, match="mask shape"):
        shape_mask("circle:3", (8, 8))


def test_cli_edit_commands(runs, tmp_path, run_cli):
    diffusion, cyclegan, vae = runs
    source = _digit(1)
    (tmp_path / "in.png").write_bytes(_png(source))
    code, out, err = run_cli("edit", "inpaint", diffusion, "--image", tmp_path / "in.png", "--shape", "centre:0.25",
                             "--out", tmp_path / "filled.png", "--steps", "3", "--jump-n-sample", "2",
                             "--jump-length", "1", "--label", "3")
    assert code == 0, err
    filled = np.asarray(Image.open(tmp_path / "filled.png"))
    keep = shape_mask("centre:0.25", (8, 8))[0, 0].bool().numpy()
    assert filled.shape == (8, 8) and np.array_equal(filled[keep], source[keep])
    code, _, err = run_cli("edit", "img2img", diffusion, "--image", tmp_path / "in.png", "--strength", "0",
                           "--out", tmp_path / "same.png")
    assert code == 0, err and np.array_equal(np.asarray(Image.open(tmp_path / "same.png")), source)
    code, _, err = run_cli("edit", "img2img", diffusion, "--image", tmp_path / "in.png", "--strength", "0.5",
                           "--steps", "4", "--out", tmp_path / "i2i.png")
    assert code == 0, err
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(2):
        (folder / f"d{i}.png").write_bytes(_png(_digit(i)))
    code, out, err = run_cli("edit", "transfer", cyclegan, "--image", folder, "--out", tmp_path / "translated")
    assert code == 0, err and sorted(p.name for p in (tmp_path / "translated").iterdir()) == ["d0.png", "d1.png"]
    code, _, err = run_cli("edit", "transfer", diffusion, "--to", diffusion, "--image", tmp_path / "in.png",
                           "--out", tmp_path / "ddim.png", "--steps", "5")
    assert code == 0, err
    # errors: one line each
    (tmp_path / "big.png").write_bytes(_png(_digit(size=16)))
    code, _, err = run_cli("edit", "img2img", diffusion, "--image", tmp_path / "big.png", "--strength", "0.3",
                           "--out", tmp_path / "x.png")
    assert_one_line_error(code, err, "16x16", "--resize")
    code, _, err = run_cli("edit", "img2img", diffusion, "--image", tmp_path / "big.png", "--strength", "0.3",
                           "--steps", "2", "--out", tmp_path / "x.png", "--resize")
    assert code == 0, err and Image.open(tmp_path / "x.png").size == (8, 8)
    code, _, err = run_cli("edit", "inpaint", vae, "--image", tmp_path / "in.png", "--shape", "centre:0.25",
                           "--out", tmp_path / "x.png")
    assert_one_line_error(code, err, "vae family cannot inpaint", "diffusion")
    (tmp_path / "m.png").write_bytes(_png(_digit(size=4)))
    code, _, err = run_cli("edit", "inpaint", diffusion, "--image", tmp_path / "in.png", "--mask",
                           tmp_path / "m.png", "--out", tmp_path / "x.png")
    assert_one_line_error(code, err, "must match the image")
    code, _, err = run_cli("edit", "inpaint", diffusion, "--image", tmp_path / "in.png", "--out", tmp_path / "x.png")
    assert_one_line_error(code, err, "--mask", "--shape")


@pytest.fixture
def server(runs, tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    _, token = store.add("tests")
    app = create_app([runs[0], runs[1]], store, Limits(requests_per_minute=6000, burst=100, max_upload_bytes=3000,
                                                       max_upload_pixels=32 * 32), batching=None)
    return TestClient(app), {"Authorization": f"Bearer {token}"}


def test_edit_endpoints(server):
    client, auth = server
    source = _digit(2)
    image = base64.b64encode(_png(source)).decode()
    body = {"image": image, "shape": "centre:0.25", "steps": 3, "seed": 1}
    assert client.post("/v1/models/dd/edits/inpaint", json=body).status_code == 401
    r = client.post("/v1/models/dd/edits/inpaint", json=body, headers=auth)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    filled = np.asarray(Image.open(io.BytesIO(r.content)))
    keep = shape_mask("centre:0.25", (8, 8))[0, 0].bool().numpy()
    assert np.array_equal(filled[keep], source[keep])
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255
    r = client.post("/v1/models/dd/edits/inpaint", headers=auth, json={
        "image": image, "mask": base64.b64encode(_png(mask)).decode(), "steps": 2})
    assert r.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(r.content)))[:, :4],
                                                   source[:, :4])
    r = client.post("/v1/models/dd/edits/img2img", json={"image": image, "strength": 0}, headers=auth)
    assert r.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), source)
    r = client.post("/v1/models/cg/edits/transfer", json={"image": image, "direction": "b2a"}, headers=auth)
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (8, 8)
    r = client.post("/v1/models/dd/edits/transfer", json={"image": image, "to": "dd", "steps": 3}, headers=auth)
    assert r.status_code == 200, r.text
    # refusals, each a clear 4xx
    noisy = base64.b64encode(_png(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))).decode()
    r = client.post("/v1/models/dd/edits/img2img", json={"image": noisy, "strength": 0.5}, headers=auth)
    assert r.status_code == 413 and "over 3000 bytes" in r.json()["detail"]
    r = client.post("/v1/models/dd/edits/img2img", json={"image": "A" * 100_000, "strength": 0.5}, headers=auth)
    assert r.status_code == 413  # the body limit of upload routes
    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(100)).decode()
    r = client.post("/v1/models/dd/edits/img2img", json={"image": corrupt, "strength": 0.5}, headers=auth)
    assert r.status_code == 400 and "not a readable image" in r.json()["detail"]
    r = client.post("/v1/models/dd/edits/img2img", json={"image": "%%%", "strength": 0.5}, headers=auth)
    assert r.status_code == 400 and "base64" in r.json()["detail"]
    small = base64.b64encode(_png(_digit(size=4))).decode()
    r = client.post("/v1/models/dd/edits/img2img", json={"image": small, "strength": 0.5}, headers=auth)
    assert r.status_code == 400 and "the run's images are 8x8" in r.json()["detail"]
    r = client.post("/v1/models/dd/edits/img2img", json={"image": small, "strength": 0.5, "resize": True,
                                                           "steps": 2}, headers=auth)
    assert r.status_code == 200
    large = base64.b64encode(_png(np.zeros((40, 40), np.uint8))).decode()
    r = client.post("/v1/models/dd/edits/img2img", json={"image": large, "strength": 0.5}, headers=auth)
    assert r.status_code == 400 and "at most 1024 pixels" in r.json()["detail"]
    r = client.post("/v1/models/dd/edits/inpaint", json={"image": image, "mask": small}, headers=auth)
    assert r.status_code == 400 and "must match the image" in r.json()["detail"]
    r = client.post("/v1/models/dd/edits/inpaint", json={"image": image}, headers=auth)
    assert r.status_code == 422
    r = client.post("/v1/models/cg/edits/inpaint", json=body, headers=auth)
    assert r.status_code == 400 and "cyclegan family cannot inpaint" in r.json()["detail"]
    r = client.post("/v1/models/dd/edits/img2img", json={"image": image, "strength": 2}, headers=auth)
    assert r.status_code == 422
    assert client.post("/v1/models/dd/images", json={"n": 1}, headers=auth).status_code == 200  # other routes too
    assert client.post("/v1/models/dd/images", json={"n": 1, "pad": "A" * 70000},
                       headers=auth).status_code == 413  # their body limit is unchanged


def test_serve_flags_set_the_upload_limits(runs, run_cli, monkeypatch, tmp_path):
    """`genlab serve --max-upload-bytes/--max-upload-pixels` reach the limits the edit endpoints check."""
    import uvicorn

    import genlab.serve.app

    seen = {}
    monkeypatch.setattr(genlab.serve.app, "create_app", lambda runs, store, limits, **kw: seen.setdefault("l", limits))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    code, _, err = run_cli("serve", runs[0], "--keys", tmp_path / "keys.json", "--max-upload-bytes", "5000",
                           "--max-upload-pixels", "4096")
    assert code == 0, err
    assert (seen["l"].max_upload_bytes, seen["l"].max_upload_pixels) == (5000, 4096)
