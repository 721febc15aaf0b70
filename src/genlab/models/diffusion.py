"""Denoising diffusion (DDPM training, DDIM / DPM-Solver++ / ancestral sampling, classifier-free guidance).

The network predicts eps or v; everything else (schedule, samplers, the variational bound) lives in
`genlab.diffusion` and sees only a denoiser (x_t, t) -> (x0_hat, eps_hat).

Latent diffusion (`model.latent_from: RUN`, Rombach et al. 2022): the U-Net runs on the latents of a trained
autoencoder run, frozen and in no phase: x -> the encoder's posterior mean times `latent_scale`, and samples are
decoded back to pixels. The scale is 1 / std of the posterior means of the first (up to) 256 training images in
split order, computed once when training starts (`calibrate`) and kept in a persistent buffer, so checkpoints,
EMA, resume and sampling all use the same number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.core.options import option
from genlab.core.validate import choice, fraction, positive
from genlab.diffusion.likelihood import variational_bound
from genlab.diffusion.samplers import SAMPLERS, sample_loop
from genlab.diffusion.schedule import NoiseSchedule
from genlab.models.autoencoder import Autoencoder
from genlab.models.base import DataSpec, GenerativeModel, Phase
from genlab.nn.noise import rand, randint, randn
from genlab.nn.unet import UNet


@dataclass
class DiffusionSampling:
    """Options of one sampling call; None keeps the run's default (model.sample_steps, model.sampler, ...)."""

    steps: int | None = option(None, "network calls per sample", ge=1, le=1000)
    guidance: float | None = option(None, "classifier-free guidance scale (0 unconditional, 1 conditional, >1 "
                                    "guided)", ge=0)
    sampler: str | None = option(None, "sampler", choices=tuple(SAMPLERS))
    eta: float | None = option(None, "DDIM noise (0 deterministic)", ge=0, le=1)


@dataclass
class DiffusionEval:
    """What `genlab eval` computes for a diffusion model beyond its modality's metrics."""

    vlb_steps: int = 100  # timesteps in the variational bound (all T is tightest, T/vlb_steps x cheaper)
    vlb_images: int | None = 100  # test images for the bound (its cost: vlb_steps calls each); None: all

    def validate(self) -> None:
        positive("eval", {"vlb_steps": self.vlb_steps, "vlb_images": self.vlb_images})


@dataclass
class DiffusionConfig:
    timesteps: int = 1000
    schedule: str = "cosine"  # linear | cosine
    prediction: str = "eps"  # eps | v
    min_snr_gamma: float | None = None  # min-SNR-gamma loss weighting (Hang et al. 2023); None: plain MSE
    base_channels: int = 32
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])  # one U-Net level each, halving size
    blocks_per_level: int = 1
    attention_max_size: int = 8  # self-attention on feature maps with side <= this (and in the middle)
    heads: int = 4
    dropout: float = 0.0
    patch_size: int = 1  # >1: the U-Net runs on patch x patch space-to-depth pixels (cheaper on CPU)
    conditional: bool = False
    label_dropout: float = 0.1  # labels replaced by "no label" this often in training (classifier-free guidance)
    sampler: str = "dpm++2m"  # ddpm | ddim | dpm++2m: the default at sample time
    sample_steps: int = 50  # network calls per sample by default
    guidance: float = 1.0  # default guidance scale: 0 unconditional, 1 plain conditional, >1 guided
    eta: float = 0.0  # DDIM noise (0: deterministic)
    clip_denoised: bool = True  # clip x0_hat to the data range [-1, 1] while sampling (pixels only, not latents)
    # a trained autoencoder run: diffuse in its latent space (frozen; its weights' hash is checked on open)
    latent_from: str | None = None

    def validate(self) -> None:
        choice("model.schedule", self.schedule, ("linear", "cosine"))
        choice("model.prediction", self.prediction, ("eps", "v"))
        choice("model.sampler", self.sampler, tuple(SAMPLERS))
        positive("model", {"timesteps": self.timesteps, "base_channels": self.base_channels,
                           "blocks_per_level": self.blocks_per_level, "heads": self.heads,
                           "patch_size": self.patch_size, "sample_steps": self.sample_steps,
                           "min_snr_gamma": self.min_snr_gamma})
        if not self.channel_mults or min(self.channel_mults) <= 0:
            raise GenlabError("config key 'model.channel_mults' must be a non-empty list of positive integers")
        fraction("model", {"label_dropout": self.label_dropout, "dropout": self.dropout})
        if self.sample_steps > self.timesteps:
            raise GenlabError("config key 'model.sample_steps' must be <= model.timesteps")


CALIBRATION_IMAGES = 256  # training images (in split order) whose latents set the latent scale


class Diffusion(GenerativeModel):
    modality = "image"
    config_class = DiffusionConfig
    supports_likelihood = True
    default_ema_decay = 0.999
    sample_options = DiffusionSampling
    eval_options = DiffusionEval

    def __init__(self, config: DiffusionConfig, spec: DataSpec):
        super().__init__(config, spec)
        if config.conditional and spec.num_classes < 2:
            raise GenlabError("model.conditional=true needs a labelled dataset with at least 2 classes")
        with torch.random.fork_rng(devices=[]):  # the U-Net's initialisation does not depend on latent_from
            self.autoencoder = load_autoencoder(config.latent_from, spec) if config.latent_from else None
        if self.autoencoder is not None:
            self.shape = self.autoencoder.latent_shape  # what the U-Net denoises
            # 0 until calibrate() sets it; persistent: saved with the weights
            self.register_buffer("latent_scale", torch.zeros(()))
        else:
            self.shape = (spec.channels, spec.height, spec.width)
        c, h, w = self.shape
        if h % config.patch_size or w % config.patch_size:
            raise GenlabError(f"model.patch_size={config.patch_size} must divide the "
                              f"{'latent' if self.latent else 'image'} size {h}x{w}")
        self.net = UNet(c, config.base_channels, tuple(config.channel_mults), config.blocks_per_level,
                        config.attention_max_size, h, config.heads, dropout=config.dropout,
                        num_classes=spec.num_classes if config.conditional else 0, patch=config.patch_size)
        self.schedule = NoiseSchedule.make(config.schedule, config.timesteps)

    @classmethod
    def pretrained_dir(cls, config: DiffusionConfig) -> str | None:
        """A latent model starts from its autoencoder run: the pipeline records and checks its weights' hash."""
        if config.latent_from is None:
            return None
        autoencoder_run(config.latent_from)  # a clear error before anything reads it
        return config.latent_from

    @property
    def latent(self) -> bool:
        return self.autoencoder is not None

    # -- the frozen autoencoder: never trained, never stored with the run's weights ------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if self.autoencoder is not None:
            self.autoencoder.eval()
        return self

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The run's tensors without the autoencoder's (they stay in its own run, fingerprinted in base.json)."""
        return {k: v for k, v in super().saved_state().items() if not k.startswith("autoencoder.")}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.autoencoder is None or self.adapted:
            super().load_saved_state(state)
            return
        state = {k: v for k, v in state.items() if not k.startswith("autoencoder.")}
        result = self.load_state_dict(state, strict=False)  # still raises on a tensor of the wrong size
        missing = [k for k in result.missing_keys if not k.startswith("autoencoder.")]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"mismatched keys include {sorted(missing + result.unexpected_keys)[:3]}")

    @torch.no_grad()
    def calibrate(self, dataset) -> None:
        """Latent models: latent_scale = 1 / std of the posterior means of the first CALIBRATION_IMAGES training
        images (split order, so the same value every time); kept when already set (weights from init_from)."""
        if self.autoencoder is None or float(self.latent_scale) > 0:
            return
        batch = next(iter(dataset.batches("train", CALIBRATION_IMAGES, limit=CALIBRATION_IMAGES)))
        mean, _ = self.autoencoder.encode(batch.x.to(self.device) * 2 - 1)
        std = float(mean.double().std())
        if not math.isfinite(std) or std <= 0:
            raise GenlabError(f"the latents of {self.config.latent_from} have std {std}: cannot scale them")
        self.latent_scale.fill_(1.0 / std)

    def to_latent(self, x01: torch.Tensor) -> torch.Tensor:
        """What the U-Net models: [-1, 1] pixels, or for a latent model the scaled posterior mean. The mean, not a
        posterior sample: with the autoencoder's small KL weight the posterior is narrow (a sample adds little),
        and the target stays a function of the image, drawing nothing from the run's noise stream."""
        x = x01 * 2 - 1
        if self.autoencoder is None:
            return x
        scale = self.latent_scale
        if float(scale) <= 0:
            raise GenlabError("the latent scale is not set: calibrate() runs when training starts")
        with torch.no_grad():
            return self.autoencoder.encode(x)[0] * scale

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """[0, 1] images from what the U-Net produced."""
        if self.autoencoder is not None:
            z = self.autoencoder.decode(z / self.latent_scale)
        return ((z.clamp(-1, 1) + 1) / 2).float()

    def phases(self) -> list[Phase]:
        return [Phase("denoiser", [self.net])]

    # -- training -------------------------------------------------------------------------------------
    @property
    def null_label(self) -> int:
        return self.spec.num_classes

    def training_labels(self, y: torch.Tensor | None, noise: torch.Generator) -> torch.Tensor | None:
        """The batch's labels with a `label_dropout` fraction replaced by the "no label" index."""
        if not self.conditional:
            return None
        drop = rand(y.shape, noise, device=y.device) < self.config.label_dropout
        return torch.where(drop, torch.full_like(y, self.null_label), y)

    def denoising_loss(self, batch: Batch, noise: torch.Generator, y: torch.Tensor | None):
        x0 = self.to_latent(batch.x)
        t = randint(self.schedule.timesteps, (x0.shape[0],), noise, device=x0.device)
        eps = randn(x0.shape, noise, device=x0.device)
        alpha, sigma = self.schedule.alpha_sigma(t, x0)
        out = self.net(alpha * x0 + sigma * eps, t, y)
        target = eps if self.config.prediction == "eps" else alpha * eps - sigma * x0
        mse = (out - target).pow(2).flatten(1).mean(1)
        weight = self.loss_weight(t)
        return (weight * mse).mean(), mse.mean()

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """min(SNR, gamma) / SNR for eps, / (SNR + 1) for v (Hang et al. 2023); ones without min-SNR."""
        gamma = self.config.min_snr_gamma
        if gamma is None:
            return torch.ones(t.shape, device=t.device)
        snr = self.schedule.snr(t)
        return snr.clamp(max=gamma) / (snr if self.config.prediction == "eps" else snr + 1)

    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        loss, mse = self.denoising_loss(batch, noise, self.training_labels(batch.y, noise))
        return loss, {"loss": loss, "mse": mse}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        loss, mse = self.denoising_loss(batch, noise, batch.y if self.conditional else None)
        return {"loss": loss, "mse": mse}

    # -- denoising and sampling --------------------------------------------------------------------
    def denoiser(self, y: torch.Tensor | None, guidance: float, clip: bool):
        """(x_t, t) -> (x0_hat, eps_hat) with classifier-free guidance out = u + guidance * (c - u)."""
        null = None if y is None else torch.full_like(y, self.null_label)

        def denoise(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            if y is None or guidance == 1:
                out = self.net(x, tt, y)
            elif guidance == 0:
                out = self.net(x, tt, null)
            else:
                cond, uncond = self.net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null])).chunk(2)
                out = uncond + guidance * (cond - uncond)
            alpha, sigma = self.schedule.alpha_sigma(tt[:1], x)
            if self.config.prediction == "eps":
                x0 = (x - sigma * out) / alpha
            else:
                x0 = alpha * x - sigma * out
            if clip:
                x0 = x0.clamp(-1, 1)
            return x0, (x - alpha * x0) / sigma

        return denoise

    @torch.no_grad()
    def sample(self, n: int, labels=None, noise=None, steps: int | None = None, guidance: float | None = None,
               sampler: str | None = None, eta: float | None = None) -> torch.Tensor:
        cfg = self.config
        if guidance is not None and not self.conditional:
            raise GenlabError("--guidance needs a class-conditional diffusion model (model.conditional=true)")
        if guidance is not None and guidance < 0:
            raise GenlabError("--guidance must be >= 0")
        y = self.sample_labels(n, labels, noise)
        if self.latent and float(self.latent_scale) <= 0:
            raise GenlabError("this latent diffusion model was never trained (its latent scale is not set)")
        x = randn((n, *self.shape), noise, device=self.device)
        denoise = self.denoiser(y, cfg.guidance if guidance is None else guidance, self.clip)
        x0 = sample_loop(sampler or cfg.sampler, self.schedule, denoise, x, steps or cfg.sample_steps, noise,
                         cfg.eta if eta is None else eta)
        return self.to_pixels(x0)

    # -- editing (genlab edit; the sampler-level algorithms are in genlab.diffusion.editing) -----------------------
    def edit_labels(self, n: int, labels) -> torch.Tensor | None:
        """Labels of an edit: the ones given, else (conditional models) the "no label" index, i.e. unconditional:
        an edit should follow the image, not a random class."""
        if labels is None:
            return torch.full((n,), self.null_label, dtype=torch.long, device=self.device) if self.conditional else None
        return self.sample_labels(n, torch.as_tensor(labels), None)

    def _edit_denoiser(self, n: int, labels, guidance: float | None, clip: bool, plain: bool = False):
        """The denoiser of an edit: guidance as given, else the run's default with a label and 1 without (or
        always 1 when `plain`: DDIM inversion and its decoding)."""
        if guidance is not None and (not self.conditional or labels is None):
            raise GenlabError("--guidance needs a class-conditional diffusion model and a --label")
        if guidance is not None and guidance < 0:
            raise GenlabError("--guidance must be >= 0")
        if self.latent and float(self.latent_scale) <= 0:
            raise GenlabError("this latent diffusion model was never trained (its latent scale is not set)")
        if guidance is None:
            guidance = self.config.guidance if labels is not None and not plain else 1.0
        return self.denoiser(self.edit_labels(n, labels), guidance, clip)

    def latent_mask(self, known: torch.Tensor) -> torch.Tensor:
        """A pixel mask (1 = known) in the U-Net's space: itself for pixel models; for latent models a latent cell
        is known only when every pixel it covers is (a min-pool by the autoencoder's downsampling factor)."""
        if not self.latent:
            return known
        _, h, _ = self.shape
        factor = known.shape[-2] // h
        return -torch.nn.functional.max_pool2d(-known, factor)

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, mask: torch.Tensor, labels=None, steps: int | None = None,
                guidance: float | None = None, jump_length: int = 10, jump_n_sample: int = 1,
                seed: int = 0) -> torch.Tensor:
        """RePaint inpainting. `images`: [0, 1] N x C x H x W of the run's shape; `mask`: 1 = KNOWN (kept), 0 = to
        fill, shaped N x 1 x H x W, 1 x 1 x H x W or H x W (values >= 0.5 count as known). `steps` network calls
        (the run's sample_steps by default) on the jump-free walk; jumps (`jump_n_sample` > 1) multiply that.
        Latent models inpaint the latents with the mask min-pooled to the latent grid, decode, and paste the known
        pixels back; pixel models do the same paste (so the known pixels equal the input exactly)."""
        from genlab.diffusion.editing import inpaint
        from genlab.diffusion.schedule import sampling_timesteps

        x = self.check_images(images)
        known = self._check_mask(mask, x)
        n = x.shape[0]
        denoise = self._edit_denoiser(n, labels, guidance, self.clip)
        noise = torch.Generator().manual_seed(seed)
        ts = sampling_timesteps(self.schedule.timesteps, steps or self.config.sample_steps)
        z = inpaint(self.schedule, denoise, self.to_latent(x), self.latent_mask(known), ts, noise,
                    jump_length, jump_n_sample)
        return known * x + (1 - known) * self.to_pixels(z)

    def _check_mask(self, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mask = torch.as_tensor(mask, device=x.device).float()
        if mask.dim() == 2:
            mask = mask[None, None]
        h, w = x.shape[-2:]
        if mask.dim() != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (h, w) or mask.shape[0] not in (
                1, x.shape[0]):
            raise GenlabError(f"the mask must be {h}x{w} like the images (N x 1 x H x W), got "
                              f"{'x'.join(map(str, mask.shape))}")
        return (mask >= 0.5).float().expand(x.shape[0], 1, h, w)

    @torch.no_grad()
    def img2img(self, images: torch.Tensor, strength: float, labels=None, steps: int | None = None,
                guidance: float | None = None, seed: int = 0, sampler: str | None = None) -> torch.Tensor:
        """SDEdit: noise `images` to t ~ strength * T and denoise with the run's sampler; `steps` is what a full
        edit would cost (round(strength * steps) network calls). strength 0 returns the images unchanged. Latent
        models edit the latents (encode, edit, decode)."""
        from genlab.diffusion.editing import img2img

        x = self.check_images(images)
        if not 0 <= strength <= 1:
            raise GenlabError(f"--strength must be in [0, 1], got {strength}")
        if strength == 0:
            return x.clone()
        denoise = self._edit_denoiser(x.shape[0], labels, guidance, self.clip)
        noise = torch.Generator().manual_seed(seed)
        cfg = self.config
        z = img2img(self.schedule, denoise, self.to_latent(x), strength, steps or cfg.sample_steps, noise,
                    sampler or cfg.sampler, cfg.eta)
        return self.to_pixels(z)

    @torch.no_grad()
    def invert(self, images: torch.Tensor, labels=None, steps: int | None = None, refine: int = 0) -> torch.Tensor:
        """Deterministic DDIM inversion of `images` to the noise x_T (in the U-Net's space: latents for latent
        models), with no clipping and guidance 1; `decode_from_noise` with the same labels and steps maps it
        back. `refine` > 0: fixed-point refinement of each step (genlab.diffusion.editing.ddim_invert), closer
        round trips for refine x more network calls."""
        from genlab.diffusion.editing import ddim_invert, inversion_timesteps

        x = self.check_images(images)
        denoise = self._edit_denoiser(x.shape[0], labels, None, clip=False, plain=True)
        ts = inversion_timesteps(self.schedule, steps or self.config.sample_steps)
        return ddim_invert(self.schedule, denoise, self.to_latent(x), ts, refine)

    @torch.no_grad()
    def decode_from_noise(self, x_t: torch.Tensor, labels=None, steps: int | None = None) -> torch.Tensor:
        """[0, 1] images decoded from x_T by deterministic DDIM (eta 0, no clipping, guidance 1)."""
        from genlab.diffusion.editing import ddim_decode, inversion_timesteps

        if x_t.dim() != 4 or tuple(x_t.shape[1:]) != tuple(self.shape):
            raise GenlabError(f"the noise must be N x {'x'.join(map(str, self.shape))} for this model, got "
                              f"{'x'.join(map(str, x_t.shape))}")
        denoise = self._edit_denoiser(x_t.shape[0], labels, None, clip=False, plain=True)
        ts = inversion_timesteps(self.schedule, steps or self.config.sample_steps)
        return self.to_pixels(ddim_decode(self.schedule, denoise, x_t.to(self.device).float(), ts))

    @property
    def clip(self) -> bool:
        """Clip x0_hat to [-1, 1] while sampling: pixels have that range, latents do not."""
        return self.config.clip_denoised and not self.latent

    # -- likelihood --------------------------------------------------------------------------------
    @torch.no_grad()
    def test_likelihood(self, dataset, ec, binarize: bool, quiet: bool = True) -> dict:
        """The variational bound over `ec.vlb_steps` timesteps on the first `ec.vlb_images` test images. A latent
        model has no pixel-space likelihood (its bound would be over latents, with no decoder density): that is
        said, with no figure."""
        from genlab.metrics.likelihood import summed

        if self.latent:
            return {"not_applicable": "latent diffusion (model.latent_from) has no pixel-space likelihood: its "
                                      "variational bound would be over the autoencoder's latents",
                    "headline": {}}

        n = int(dataset.splits["test"].numel())
        m = n if ec.vlb_images is None else min(ec.vlb_images, n)
        steps = min(ec.vlb_steps, self.schedule.timesteps)
        noise = torch.Generator().manual_seed(ec.seed)

        def score(batch):
            denoise = self.denoiser(batch.y if self.conditional else None, 1.0, self.clip)
            return variational_bound(self.schedule, denoise, batch.x, steps, noise)

        sums = summed(dataset.batches("test", 250, ec.seed if binarize else None, limit=m), score,
                      math.ceil(m / 250), f"VLB {steps} steps", quiet)
        dims = self.spec.channels * self.spec.height * self.spec.width
        means = {k: v / m for k, v in sums.items()}
        best = max(("small", "large"), key=lambda v: means[f"vlb_{v}"])
        bpd = -means[f"vlb_{best}"] / (dims * math.log(2))
        return {
            "test_vlb_small_variance_nats": means["vlb_small"],
            "test_vlb_large_variance_nats": means["vlb_large"],
            "prior_kl_nats": means["prior_kl"],
            "decoder_nats": means["decoder"],
            "vlb_steps": steps,
            "vlb_images": m,
            "test_bits_per_dim": bpd,
            "bits_per_dim_variance": best,
            "binarized_test": binarize,
            "headline": {f"test_vlb_nats ({steps} steps, {m} images)": means[f"vlb_{best}"],
                         "test_bits_per_dim": bpd},
        }


def autoencoder_run(folder: str):
    """The run folder and config of a trained autoencoder run (model.latent_from); one clear error when it is
    missing, unfinished or of another family."""
    import yaml

    from genlab.config import config_from_dict
    from genlab.core.runs import existing_run

    try:
        paths = existing_run(folder)
        cfg = config_from_dict(yaml.safe_load(paths.config.read_text()))
    except (GenlabError, yaml.YAMLError, TypeError, AttributeError) as exc:  # missing, unfinished, unreadable
        raise GenlabError(f"model.latent_from={folder}: {exc}") from None
    if cfg.family != "autoencoder":
        raise GenlabError(f"model.latent_from={folder} is a {cfg.family} run; latent diffusion needs an autoencoder "
                          "run (family: autoencoder)")
    return paths, cfg


def load_autoencoder(folder: str, spec: DataSpec) -> Autoencoder:
    """The frozen autoencoder of run `folder` (model.latent_from) for images of `spec`; one clear error when it is
    missing, not an autoencoder, or made for other images."""
    from genlab.core.runs import load_tensors, read_json

    paths, cfg = autoencoder_run(folder)
    shape = read_json(paths.dataset).get("shape_chw") if paths.dataset.is_file() else None
    mine = [spec.channels, spec.height, spec.width]
    if shape is not None and list(shape) != mine:
        raise GenlabError(f"model.latent_from={folder} was trained on {'x'.join(map(str, shape))} (CxHxW) images; "
                          f"this data is {'x'.join(map(str, mine))}")
    model = Autoencoder(cfg.model, DataSpec(spec.channels, spec.height, spec.width, 0))
    try:
        model.load_saved_state(load_tensors(paths.final_weights))
    except RuntimeError as exc:
        raise GenlabError(f"the weights of {paths.root} do not fit its config: {str(exc)[:200]}") from None
    model.eval().requires_grad_(False)
    return model
