import math

import pytest
import torch
from torch import nn

from genlab.config import DataConfig
from genlab.core.batch import Batch
from genlab.modalities.image.data import images_to_unit, load_image_dataset
from genlab.models.base import DataSpec
from genlab.models.gan import GAN, GANConfig
from genlab.models.vae import VAE, VAEConfig
from genlab.nn.adversarial import gradient_penalty
from genlab.nn.likelihoods import discretized_logistic_log_prob

SPEC = DataSpec(channels=1, height=12, width=10, num_classes=3)


def batch(n=6, spec=SPEC, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, spec.channels, spec.height, spec.width), generator=g).float() / 255
    return Batch(x, torch.randint(0, spec.num_classes, (n,), generator=g))


@pytest.mark.parametrize("architecture", ["conv", "mlp"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "logistic"])
@pytest.mark.parametrize("conditional", [False, True])
def test_vae_shapes_and_finite_losses(architecture, likelihood, conditional):
    cfg = VAEConfig(latent_dim=3, architecture=architecture, widths=[4, 8], hidden=[16], likelihood=likelihood,
                    conditional=conditional)
    model = VAE(cfg, SPEC)
    noise = torch.Generator().manual_seed(0)
    loss, terms = model.phase_loss("vae", batch(), noise)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(terms) == {"neg_elbo", "reconstruction", "kl"} and all(torch.isfinite(v) for v in terms.values())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    samples = model.sample(5, noise=noise)
    assert samples.shape == (5, 1, 12, 10) and samples.min() >= 0 and samples.max() <= 1


def test_iwae_bound_is_above_elbo_and_tightens_with_k():
    torch.manual_seed(0)
    digits = load_image_dataset(DataConfig())
    b = Batch(images_to_unit(digits.images[:20]), None)
    model = VAE(VAEConfig(latent_dim=4, widths=[8, 16]), DataSpec(1, 8, 8, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(150):  # fit the batch so the posterior is informative and the bounds differ clearly
        loss, _ = model.phase_loss("vae", b, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    elbo_mean = torch.stack([model.log_likelihood(b, 1, torch.Generator().manual_seed(s))["iwae"]
                             for s in range(200)]).mean(0)
    iwae_50 = model.log_likelihood(b, 50, torch.Generator().manual_seed(1))["iwae"]
    iwae_500 = model.log_likelihood(b, 500, torch.Generator().manual_seed(2))["iwae"]
    assert iwae_50.mean() > elbo_mean.mean() + 0.2
    assert (iwae_50 > elbo_mean).all()  # Jensen: E[log mean w] >= E[log w], strictly for a non-degenerate q
    assert iwae_500.mean() >= iwae_50.mean() - 0.05


def test_iwae_chunking_does_not_change_the_estimate():
    torch.manual_seed(0)
    a = VAE(VAEConfig(latent_dim=4, widths=[4, 8], iwae_chunk=10_000), SPEC).eval()
    b = VAE(VAEConfig(latent_dim=4, widths=[4, 8], iwae_chunk=7), SPEC).eval()
    b.load_state_dict(a.state_dict())
    x = batch(n=5)
    ra = a.log_likelihood(x, 256, torch.Generator().manual_seed(3))["iwae"]
    rb = b.log_likelihood(x, 256, torch.Generator().manual_seed(3))["iwae"]
    torch.testing.assert_close(ra, rb, atol=0.3, rtol=0)  # same estimator; draws differ only by chunking


def test_discretized_logistic_is_a_distribution_over_256_values():
    values = torch.arange(256).float().div(255).view(256, 1, 1, 1)
    for mean, log_scale in ((0.1, -2.0), (-0.95, -4.0), (0.99, 0.5)):
        lp = discretized_logistic_log_prob(torch.full_like(values, mean), torch.full_like(values, log_scale), values)
        assert torch.logsumexp(lp, 0).exp().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("loss", ["ns", "hinge", "wgan-gp"])
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("spectral_norm, norm", [(False, "none"), (True, "none"), (False, "group")])
def test_gan_shapes_and_finite_losses(loss, conditional, spectral_norm, norm):
    cfg = GANConfig(latent_dim=4, generator_widths=[4, 8], discriminator_widths=[4, 8], loss=loss,
                    conditional=conditional, spectral_norm=spectral_norm, discriminator_norm=norm)
    model = GAN(cfg, SPEC)
    assert [p.name for p in model.phases()] == ["discriminator", "generator"]
    noise = torch.Generator().manual_seed(0)
    for phase in model.phases():
        value, terms = model.phase_loss(phase.name, batch(), noise)
        assert value.ndim == 0 and all(torch.isfinite(v) for v in terms.values())
        value.backward()
    samples = model.sample(7, labels=torch.tensor([2]) if conditional else None, noise=noise)
    assert samples.shape == (7, 1, 12, 10) and samples.min() >= 0 and samples.max() <= 1


def test_discriminator_phase_does_not_touch_generator():
    model = GAN(GANConfig(latent_dim=4, generator_widths=[4, 8], discriminator_widths=[4, 8]), SPEC)
    loss, _ = model.phase_loss("discriminator", batch(), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())


class ConstantCritic(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x, y):
        return self.w * x.flatten(1).sum(1) + self.value


def test_generator_cannot_beat_a_frozen_constant_discriminator():
    """Against a frozen D that scores every image c, the non-saturating G loss is softplus(-c) whatever G does."""
    torch.manual_seed(0)
    model = GAN(GANConfig(latent_dim=4, generator_widths=[4, 8], discriminator_widths=[4, 8]), SPEC)
    model.discriminator = ConstantCritic(0.7)
    opt = torch.optim.Adam(model.generator.parameters(), lr=1e-2)
    bound = math.log1p(math.exp(-0.7))
    noise = torch.Generator().manual_seed(0)
    for _ in range(20):
        loss, _ = model.phase_loss("generator", batch(), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert loss.item() >= bound - 1e-6
    assert loss.item() == pytest.approx(bound, abs=1e-6)


def test_generator_learns_against_a_frozen_real_discriminator():
    """With D frozen, G's steps raise D's score of fakes: G's loss falls, and D's weights stay as they were."""
    torch.manual_seed(0)
    model = GAN(GANConfig(latent_dim=4, generator_widths=[8, 16], discriminator_widths=[8, 16]), SPEC)
    for p in model.discriminator.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    opt = torch.optim.Adam(model.generator.parameters(), lr=5e-3)
    losses = []
    for step in range(40):
        loss, _ = model.phase_loss("generator", batch(seed=step), torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05
    for k, v in model.discriminator.state_dict().items():
        assert torch.equal(v, before[k])


class LinearCritic(nn.Module):
    def __init__(self, norm: float):
        super().__init__()
        w = torch.randn(SPEC.channels * SPEC.height * SPEC.width)
        self.w = nn.Parameter(w / w.norm() * norm)

    def forward(self, x, y):
        return x.flatten(1) @ self.w


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_linear_critic(norm, expected):
    b = batch()
    gp = gradient_penalty(LinearCritic(norm), b.x, torch.rand_like(b.x), torch.Generator().manual_seed(0), None)
    assert gp.item() == pytest.approx(expected, abs=1e-5)


def test_gradient_penalty_per_pack():
    """PacGAN: a linear critic on packs of 2 rows has gradient norm ||w|| per pack."""
    w = torch.tensor([0.6, 0.8, 0.0, 0.0])  # ||w|| = 1 -> zero penalty only when the norm is taken per pack

    def critic(x):
        return x.reshape(-1, 4) @ w

    real = torch.rand(8, 2)
    gp = gradient_penalty(critic, real, torch.rand(8, 2), torch.Generator().manual_seed(0), group=2)
    assert gp.item() == pytest.approx(0.0, abs=1e-6)


def test_discriminator_learns_to_separate_real_from_fixed_fakes():
    torch.manual_seed(0)
    model = GAN(GANConfig(latent_dim=4, generator_widths=[4, 8], discriminator_widths=[8, 16]), SPEC)
    opt = torch.optim.Adam(model.discriminator.parameters(), lr=2e-3)
    first = None
    for step in range(60):
        loss, _ = model.phase_loss("discriminator", batch(seed=step), torch.Generator().manual_seed(step))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first == pytest.approx(2 * math.log(2), abs=0.1)  # chance level at init
    assert loss.item() < 0.5 * first
