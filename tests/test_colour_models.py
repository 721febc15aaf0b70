"""Every image family on RGB at 32 and 64 px: losses are finite, every weight gets a gradient, samples have the
data's shape and range (the emoji recipes' architectures, narrowed so the test stays fast)."""

import pytest
import torch

from genlab.core.batch import Batch
from genlab.models.base import DataSpec
from genlab.models.diffusion import Diffusion, DiffusionConfig
from genlab.models.gan import GAN, GANConfig
from genlab.models.vae import VAE, VAEConfig

MODELS = {
    "vae-logistic": lambda spec: VAE(VAEConfig(latent_dim=8, widths=[4, 8, 8, 8], likelihood="logistic",
                                          conditional=True), spec),
    "dcgan": lambda spec: GAN(GANConfig(latent_dim=8, generator_widths=[4, 8, 8], discriminator_widths=[4, 8, 8],
                                   discriminator_norm="batch"), spec),
    "cgan-wgangp": lambda spec: GAN(GANConfig(latent_dim=8, generator_widths=[4, 8, 8], discriminator_widths=[4, 8, 8],
                                         loss="wgan-gp", conditional=True), spec),
    "diffusion": lambda spec: Diffusion(DiffusionConfig(base_channels=8, channel_mults=[1, 2, 2], patch_size=2,
                                                   attention_max_size=8, heads=2, conditional=True,
                                                   sample_steps=2), spec),
}

@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_family_on_rgb(name, size):
    torch.manual_seed(0)
    model = MODELS[name](DataSpec(3, size, size, 4))
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randint(0, 256, (4, 3, size, size), generator=g).float() / 255,
                  torch.randint(0, 4, (4,), generator=g))
    for phase in model.phases():
        loss, terms = model.phase_loss(phase.name, batch, torch.Generator().manual_seed(1))
        assert loss.ndim == 0 and torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values())
        model.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in phase.parameters()), phase.name
    model.eval()
    samples = model.sample(3, noise=torch.Generator().manual_seed(2))
    assert samples.shape == (3, 3, size, size)
    assert samples.min() >= 0 and samples.max() <= 1
    assert samples.std() > 0  # not a constant image
