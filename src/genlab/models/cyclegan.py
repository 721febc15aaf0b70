"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation between two domains A and B.

Two ResNet-style generators (A->B, B->A) and two PatchGAN discriminators, least-squares GAN losses (LSGAN), a
cycle-consistency loss lambda_cycle * (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1) and an identity loss
lambda_identity * (|G_AB(b) - b|_1 + |G_BA(a) - a|_1) (lambda_identity defaults to 0.5 * lambda_cycle, the paper's
0.5 relative weight). Two trainer phases: "generators" then "discriminators", each on its own fresh batch.

Data: an ordinary labelled image dataset whose classes are the domains: `model.domain_a` and `model.domain_b`
(class indices, default 0 and 1). A folder with two sub-folders is the usual layout (the folder loader labels
images by sub-folder, in sorted name order: `data/emoji/google-twitter-64/{google,twitter}` gives A = google,
B = twitter); images of other classes are ignored, so a labelled set such as digits works too (A = 0s, B = 1s).
A batch holds both domains, unpaired: the family splits it by label. A batch with no image of a domain (rare with
two classes) contributes no term for it. Leaves out the paper's history pool of generated images (it would be
more state to checkpoint for an exact resume).

A CycleGAN draws nothing from noise: `sample` is an error; translate images with `transfer` (`genlab edit transfer
RUN --image X.png`, POST /v1/models/NAME/edits/transfer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.core.validate import choice, positive
from genlab.models.base import DataSpec, GenerativeModel, Phase


@dataclass
class CycleGANConfig:
    base_channels: int = 32  # generator width at full resolution (doubling at each downsampling)
    downsamples: int = 2  # stride-2 convolutions before the residual blocks (image side divisible by 2^this)
    res_blocks: int = 4  # residual blocks at the lowest resolution
    discriminator_channels: int = 32
    discriminator_layers: int = 3  # stride-2 convolutions of the PatchGAN (each output scores one patch)
    lambda_cycle: float = 10.0  # weight of the cycle-consistency L1 loss
    lambda_identity: float | None = None  # weight of the identity L1 loss; None: 0.5 * lambda_cycle
    domain_a: int = 0  # class index of domain A
    domain_b: int = 1  # class index of domain B

    def validate(self) -> None:
        positive("model", {"base_channels": self.base_channels, "discriminator_channels": self.discriminator_channels,
                           "discriminator_layers": self.discriminator_layers})
        if self.downsamples < 0 or self.res_blocks < 0:
            raise GenlabError("config keys 'model.downsamples' and 'model.res_blocks' must be >= 0")
        if self.lambda_cycle < 0 or (self.lambda_identity is not None and self.lambda_identity < 0):
            raise GenlabError("config keys 'model.lambda_cycle' and 'model.lambda_identity' must be >= 0")
        if self.domain_a == self.domain_b or min(self.domain_a, self.domain_b) < 0:
            raise GenlabError("config keys 'model.domain_a' and 'model.domain_b' must be two different class indices")

    @property
    def identity_weight(self) -> float:
        return 0.5 * self.lambda_cycle if self.lambda_identity is None else self.lambda_identity


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson et al. 2016's image-to-image network as in CycleGAN: 7x7 conv, stride-2 downsampling, residual
    blocks, nearest-neighbour upsampling + conv (no checkerboard), 7x7 conv to tanh; the output is the input's size."""

    def __init__(self, channels: int, config: CycleGANConfig):
        super().__init__()
        width = config.base_channels
        pad = 3
        layers: list[nn.Module] = [nn.ReflectionPad2d(pad), nn.Conv2d(channels, width, 7), nn.InstanceNorm2d(width),
                                   nn.ReLU(True)]
        for _ in range(config.downsamples):
            layers += [nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(width * 2), nn.ReLU(True)]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(config.res_blocks)]
        for _ in range(config.downsamples):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width // 2, 3, padding=1),
                       nn.InstanceNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ReflectionPad2d(pad), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # [-1, 1] in and out


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): strided 4x4 convolutions, then 3x3 ones (same size, for small images); one
    LSGAN score per patch."""

    def __init__(self, channels: int, config: CycleGANConfig):
        super().__init__()
        width = config.discriminator_channels
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        for _ in range(config.discriminator_layers - 1):
            layers += [nn.Conv2d(width, width * 2, 4, stride=2, padding=1), nn.InstanceNorm2d(width * 2),
                       nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.InstanceNorm2d(width), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(width, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def cycle_loss(g_ab: nn.Module, g_ba: nn.Module, a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    """Unweighted cycle-consistency: mean |G_BA(G_AB(a)) - a| + mean |G_AB(G_BA(b)) - b| (a missing domain adds 0)."""
    terms = []
    if a is not None:
        terms.append((g_ba(g_ab(a)) - a).abs().mean())
    if b is not None:
        terms.append((g_ab(g_ba(b)) - b).abs().mean())
    return sum(terms, torch.zeros(()))


def identity_loss(g_ab: nn.Module, g_ba: nn.Module, a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    """Unweighted identity term: mean |G_AB(b) - b| + mean |G_BA(a) - a| (a generator fed its own target domain
    should leave it alone)."""
    terms = []
    if b is not None:
        terms.append((g_ab(b) - b).abs().mean())
    if a is not None:
        terms.append((g_ba(a) - a).abs().mean())
    return sum(terms, torch.zeros(()))


def lsgan(scores: torch.Tensor, target: float) -> torch.Tensor:
    return (scores - target).pow(2).mean()


class CycleGAN(GenerativeModel):
    modality = "image"
    config_class = CycleGANConfig

    def __init__(self, config: CycleGANConfig, spec: DataSpec):
        super().__init__(config, spec)
        if spec.num_classes < 2 or max(config.domain_a, config.domain_b) >= spec.num_classes:
            raise GenlabError(f"the cyclegan family needs a labelled image dataset whose classes are the two domains "
                              f"(model.domain_a={config.domain_a}, model.domain_b={config.domain_b}): e.g. a folder "
                              f"with one sub-folder per domain; this data has {spec.num_classes} classes")
        side = min(spec.height, spec.width)
        if spec.height % 2 ** config.downsamples or spec.width % 2 ** config.downsamples or \
                side // 2 ** config.downsamples < 2:
            raise GenlabError(f"model.downsamples={config.downsamples}: the image size {spec.height}x{spec.width} "
                              f"must be divisible by 2^{config.downsamples} and leave at least 2x2 pixels")
        if side // 2 ** config.discriminator_layers < 2:
            raise GenlabError(f"model.discriminator_layers={config.discriminator_layers} is too many for "
                              f"{spec.height}x{spec.width} images (each halves the size; keep at least 2x2)")
        if side <= 3:
            raise GenlabError("the cyclegan family needs images of at least 4x4 pixels")
        c = spec.channels
        self.g_ab, self.g_ba = ResnetGenerator(c, config), ResnetGenerator(c, config)
        self.d_a, self.d_b = PatchDiscriminator(c, config), PatchDiscriminator(c, config)

    def phases(self) -> list[Phase]:
        return [Phase("generators", [self.g_ab, self.g_ba]), Phase("discriminators", [self.d_a, self.d_b])]

    def domains(self, batch: Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The batch's A and B images in [-1, 1] (None for a domain it lacks)."""
        if batch.y is None:
            raise GenlabError("the cyclegan family needs labelled images (the labels are the domains)")
        x = batch.x * 2 - 1
        a, b = x[batch.y == self.config.domain_a], x[batch.y == self.config.domain_b]
        return (a if a.shape[0] else None), (b if b.shape[0] else None)

    def _zero(self, modules) -> torch.Tensor:
        """A zero connected to `modules`' parameters: the loss of a batch with nothing to learn from."""
        return sum((p.sum() * 0 for m in modules for p in m.parameters()), torch.zeros((), device=self.device))

    def generator_terms(self, a, b) -> dict[str, torch.Tensor]:
        cfg = self.config
        zero = self._zero([self.g_ab, self.g_ba])
        adv = zero
        if a is not None:
            adv = adv + lsgan(self.d_b(self.g_ab(a)), 1.0)
        if b is not None:
            adv = adv + lsgan(self.d_a(self.g_ba(b)), 1.0)
        cyc = cycle_loss(self.g_ab, self.g_ba, a, b).to(zero.device)
        idt = identity_loss(self.g_ab, self.g_ba, a, b).to(zero.device) if cfg.identity_weight > 0 else zero
        total = adv + cfg.lambda_cycle * cyc + cfg.identity_weight * idt
        return {"g_loss": total, "g_adversarial": adv, "cycle": cyc, "identity": idt}

    def discriminator_terms(self, a, b) -> dict[str, torch.Tensor]:
        loss = self._zero([self.d_a, self.d_b])
        if a is not None:  # D_B sees real B against G_AB(a); D_A real A against G_BA(b)
            with torch.no_grad():
                fake_b = self.g_ab(a)
            loss = loss + 0.5 * lsgan(self.d_b(fake_b), 0.0)
            loss = loss + 0.5 * lsgan(self.d_a(a), 1.0)
        if b is not None:
            with torch.no_grad():
                fake_a = self.g_ba(b)
            loss = loss + 0.5 * lsgan(self.d_a(fake_a), 0.0)
            loss = loss + 0.5 * lsgan(self.d_b(b), 1.0)
        return {"d_loss": loss}

    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        a, b = self.domains(batch)
        terms = self.generator_terms(a, b) if phase == "generators" else self.discriminator_terms(a, b)
        return terms["g_loss" if phase == "generators" else "d_loss"], terms

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        a, b = self.domains(batch)
        terms = {**self.generator_terms(a, b), **self.discriminator_terms(a, b)}
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def sample(self, n: int, labels=None, noise=None) -> torch.Tensor:
        raise GenlabError("a cyclegan run translates images rather than drawing them from noise: use `genlab edit "
                          "transfer RUN --image X.png --out Y.png` (or POST /v1/models/NAME/edits/transfer)")

    @torch.no_grad()
    def transfer(self, images: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """[0, 1] images of one domain translated to the other: `direction` a2b (G_AB) or b2a (G_BA)."""
        choice("direction", direction, ("a2b", "b2a"))
        x = self.check_images(images) * 2 - 1
        g = self.g_ab if direction == "a2b" else self.g_ba
        return ((g(x) + 1) / 2).clamp(0, 1).float()
