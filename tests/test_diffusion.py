"""Diffusion: the forward process, samplers against exact denoisers, guidance, label dropout, the bound."""

import math

import numpy as np
import pytest
import torch
from conftest import tiny_config
from scipy import stats

from genlab.diffusion.likelihood import variational_bound
from genlab.diffusion.samplers import ddim, ddpm, sample_loop
from genlab.diffusion.schedule import NoiseSchedule, sampling_timesteps
from genlab.models.base import DataSpec
from genlab.nn.likelihoods import discretized_gaussian_log_prob
from genlab.nn.unet import UNet
from genlab.train.trainer import build_model

SAMPLER_NAMES = ["ddpm", "ddim", "dpm++2m"]


def test_schedules_match_their_published_formulas():
    lin = NoiseSchedule.make("linear", 1000).alphas_cumprod.numpy()
    assert np.allclose(lin, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    cos = NoiseSchedule.make("cosine", 1000).alphas_cumprod.numpy()
    f = np.cos((np.arange(1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    expected = np.cumprod(1 - np.minimum(1 - f[1:] / f[:-1], 0.999))
    assert np.allclose(cos, expected)
    assert np.all(np.diff(cos) < 0) and cos[0] > 0.999 and cos[-1] < 1e-4


def test_forward_process_matches_its_closed_form():
    sched = NoiseSchedule.make("linear", 1000)
    x0 = torch.tensor([0.7, -0.3]).view(1, 2, 1, 1).expand(20000, 2, 1, 1)
    g = torch.Generator().manual_seed(0)
    for t in (0, 250, 999):
        xt = sched.q_sample(x0, torch.full((20000,), t), torch.randn(x0.shape, generator=g))
        abar = float(sched.alphas_cumprod[t])
        mean, var = xt.mean(0).flatten(), xt.var(0).flatten()
        assert torch.allclose(mean, math.sqrt(abar) * x0[0].flatten(), atol=4 * math.sqrt((1 - abar) / 20000) + 1e-6)
        assert torch.allclose(var, torch.full((2,), 1 - abar), rtol=0.05, atol=1e-7)


def test_sampling_timesteps_are_trailing_and_honour_the_count():
    for steps in (1, 10, 25, 50, 250, 1000):
        ts = sampling_timesteps(1000, steps)
        assert len(ts) == steps and ts[0] == 999 and len(set(ts.tolist())) == steps
        assert torch.all(ts[1:] < ts[:-1])
    assert sampling_timesteps(1000, 1000).tolist() == list(range(999, -1, -1))


def _model(**model):
    cfg = tiny_config("diffusion", model=model)
    return build_model(cfg, DataSpec(1, 8, 8, 10))


class _Oracle(torch.nn.Module):
    """A 'network' that knows x0 and returns the true eps (or v) for whatever x_t it is shown."""

    def __init__(self, x0, schedule, prediction):
        super().__init__()
        self.x0, self.schedule, self.prediction, self.calls = x0, schedule, prediction, 0

    def forward(self, x, t, y=None):
        self.calls += 1
        alpha, sigma = self.schedule.alpha_sigma(t, x)
        eps = (x - alpha * self.x0) / sigma
        return eps if self.prediction == "eps" else alpha * eps - sigma * self.x0


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_a_perfect_noise_predictor_recovers_x0(prediction, sampler):
    model = _model(prediction=prediction, conditional=False, timesteps=1000)
    x0 = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    model.net = _Oracle(x0, model.schedule, prediction)
    # One step from pure noise is ill-conditioned for eps (x0 = (x - sigma eps) / alpha with alpha ~ 0.006
    # amplifies float32 rounding); v-prediction has no such problem, which is why it exists.
    for steps in (1, 7, 50) if prediction == "v" else (7, 50):
        out = model.sample(6, noise=torch.Generator().manual_seed(1), steps=steps, sampler=sampler)
        assert torch.allclose(out * 2 - 1, x0, atol=1e-5)


def test_ddim_with_a_perfect_predictor_follows_the_closed_form_trajectory():
    sched = NoiseSchedule.make("cosine", 1000)
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    xT = torch.randn(4, 1, 8, 8)
    a_T = float(sched.alphas_cumprod[999])
    eps0 = (xT - math.sqrt(a_T) * x0) / math.sqrt(1 - a_T)
    seen = []

    def denoise(x, t):
        a = float(sched.alphas_cumprod[t])
        seen.append((t, x.clone()))
        return x0, (x - math.sqrt(a) * x0) / math.sqrt(1 - a)

    ddim(sched, denoise, xT, sampling_timesteps(1000, 20), None, eta=0.0)
    assert len(seen) == 20
    for t, x in seen:
        a = float(sched.alphas_cumprod[t])
        assert torch.allclose(x, math.sqrt(a) * x0 + math.sqrt(1 - a) * eps0, atol=1e-4)


def _gaussian_denoiser(sched, mu, s):
    """The exact E[x0 | x_t] when the data are N(mu, s^2) per pixel."""

    def denoise(x, t):
        a = float(sched.alphas_cumprod[t])
        alpha, sigma = math.sqrt(a), math.sqrt(1 - a)
        x0 = mu + alpha * s**2 / (a * s**2 + sigma**2) * (x - alpha * mu)
        return x0, (x - alpha * x0) / sigma

    return denoise


@pytest.mark.parametrize("sampler, steps, tol", [("ddpm", 1000, 0.02), ("ddim", 1000, 0.01), ("dpm++2m", 50, 0.01)])
def test_samplers_reproduce_gaussian_data_with_the_exact_denoiser(sampler, steps, tol):
    sched = NoiseSchedule.make("cosine", 1000)
    mu, s = 0.3, 0.2
    xT = torch.randn(40000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sample_loop(sampler, sched, _gaussian_denoiser(sched, mu, s), xT, steps,
                      torch.Generator().manual_seed(1))
    assert abs(float(out.mean()) - mu) < 0.005
    assert abs(float(out.std()) - s) / s < tol


def test_second_order_solver_converges_faster_than_ddim():
    sched = NoiseSchedule.make("cosine", 1000)
    den = _gaussian_denoiser(sched, 0.3, 0.2)
    xT = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = sample_loop("ddim", sched, den, xT, 1000, None)

    def error(name, steps):
        return float((sample_loop(name, sched, den, xT, steps, None) - exact).abs().mean())

    ddim25, ddim50, dpm25, dpm50 = error("ddim", 25), error("ddim", 50), error("dpm++2m", 25), error("dpm++2m", 50)
    assert 0.4 < ddim50 / ddim25 < 0.6  # first order: halving the step halves the error
    assert dpm50 / dpm25 < 0.25  # second order: at least four times smaller
    assert dpm25 < 0.5 * ddim25


def test_ddpm_is_ddim_with_eta_one():
    sched = NoiseSchedule.make("linear", 200)
    den = _gaussian_denoiser(sched, 0.1, 0.5)
    xT = torch.randn(100, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    ts = sampling_timesteps(200, 30)
    a = ddpm(sched, den, xT, ts, torch.Generator().manual_seed(5))
    b = ddim(sched, den, xT, ts, torch.Generator().manual_seed(5), eta=1.0)
    assert torch.allclose(a, b, atol=1e-5)


def test_ddim_eta0_is_deterministic_and_honours_the_step_count():
    model = _model(conditional=True).eval()
    calls = {"n": 0}
    forward = model.net.forward

    def counted(*args):
        calls["n"] += 1
        return forward(*args)

    model.net.forward = counted
    a = model.sample(5, noise=torch.Generator().manual_seed(3), steps=7, sampler="ddim", eta=0.0, guidance=1.0)
    assert calls["n"] == 7
    b = model.sample(5, noise=torch.Generator().manual_seed(3), steps=7, sampler="ddim", eta=0.0, guidance=1.0)
    c = model.sample(5, noise=torch.Generator().manual_seed(4), steps=7, sampler="ddim", eta=0.0, guidance=1.0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    calls["n"] = 0
    model.sample(5, noise=torch.Generator().manual_seed(3), steps=3, sampler="dpm++2m", guidance=2.5)
    assert calls["n"] == 3  # guided: one batched call per step for the conditional and unconditional halves


def _randomised(model):
    """Non-zero output layers (they start at zero) so that labels change the output."""
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    return model.eval()


def test_guidance_scale_zero_is_the_unconditional_model():
    model = _randomised(_model(conditional=True))
    x = torch.randn(4, 1, 8, 8)
    y = torch.tensor([1, 2, 3, 4])
    null = torch.full_like(y, 10)
    t = torch.full((4,), 20)
    with torch.no_grad():
        cond, uncond = model.net(x, t, y), model.net(x, t, null)
        assert not torch.allclose(cond, uncond)
        for scale, expected in [(0.0, uncond), (1.0, cond), (3.0, uncond + 3.0 * (cond - uncond))]:
            x0, _ = model.denoiser(y, scale, clip=False)(x, 20)
            alpha, sigma = model.schedule.alpha_sigma(t, x)
            assert torch.allclose(x0, (x - sigma * expected) / alpha, atol=1e-5), scale
    # End to end: with guidance 0 the requested label makes no difference.
    a = model.sample(4, torch.tensor([2]), torch.Generator().manual_seed(0), steps=4, guidance=0.0)
    b = model.sample(4, torch.tensor([7]), torch.Generator().manual_seed(0), steps=4, guidance=0.0)
    c = model.sample(4, torch.tensor([7]), torch.Generator().manual_seed(0), steps=4, guidance=1.0)
    assert torch.equal(a, b) and not torch.equal(b, c)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5])
def test_label_dropout_rate_is_honoured(rate):
    model = _model(conditional=True, label_dropout=rate)
    y = torch.randint(10, (200_000,), generator=torch.Generator().manual_seed(0))
    out = model.training_labels(y, torch.Generator().manual_seed(1))
    dropped = out == 10
    assert abs(float(dropped.float().mean()) - rate) < 0.004
    assert torch.equal(out[~dropped], y[~dropped])


def test_min_snr_weights():
    for prediction in ("eps", "v"):
        model = _model(prediction=prediction, min_snr_gamma=5.0, timesteps=1000)
        t = torch.tensor([0, 100, 500, 999])
        abar = model.schedule.alphas_cumprod[t]
        snr = abar / (1 - abar)
        denominator = snr if prediction == "eps" else snr + 1
        assert torch.allclose(model.loss_weight(t).double(), torch.minimum(snr, torch.tensor(5.0)) / denominator,
                              rtol=1e-5)
    assert torch.equal(_model().loss_weight(t), torch.ones(4))


def test_discretized_gaussian_matches_scipy_and_sums_to_one():
    mean = torch.tensor([-0.98, -0.2, 0.0, 0.5, 0.999], dtype=torch.float64)
    log_scale = torch.log(torch.tensor([0.01, 0.05, 0.3, 0.002, 0.02], dtype=torch.float64))
    levels = torch.arange(256, dtype=torch.float64) / 255
    out = discretized_gaussian_log_prob(mean.view(1, 1, 1, 5).expand(256, 1, 1, 5).reshape(256 * 5, 1, 1, 1),
                                        log_scale.repeat(256).view(-1, 1, 1, 1),
                                        levels.repeat_interleave(5).view(-1, 1, 1, 1)).view(256, 5)
    edges = np.concatenate([[-np.inf], (np.arange(1, 256) - 0.5) / 127.5 - 1, [np.inf]])
    sd = np.exp(log_scale.numpy())
    with np.errstate(divide="ignore"):
        expected = np.log(stats.norm.cdf(edges[1:, None], mean.numpy(), sd)
                          - stats.norm.cdf(edges[:-1, None], mean.numpy(), sd))
    accurate = expected > -20  # where scipy's difference of two CDFs still has digits left
    assert np.allclose(out.numpy()[accurate], expected[accurate], atol=1e-6)
    assert np.all(np.isfinite(out.numpy()))
    assert torch.allclose(out.exp().sum(0), torch.ones(5, dtype=torch.float64), atol=1e-6)


def test_variational_bound_matches_an_independent_computation():
    sched = NoiseSchedule.make("linear", 40)
    x = torch.randint(0, 256, (3, 1, 2, 2), generator=torch.Generator().manual_seed(0)).float() / 255
    x0 = x * 2 - 1
    offset = 0.05

    def denoise(x_t, t):  # a slightly wrong denoiser: x0_hat = x0 + offset, whatever the noise
        return x0 + offset, torch.zeros_like(x_t)

    steps = 8
    out = variational_bound(sched, denoise, x, steps, torch.Generator().manual_seed(0))
    # Independent: torch.distributions KLs over the respaced chain, scipy for the decoder.
    ts = sampling_timesteps(40, steps).flip(0).tolist()
    abar = [float(sched.alphas_cumprod[t]) for t in ts]
    normal = torch.distributions.Normal
    prior = torch.distributions.kl_divergence(normal(math.sqrt(abar[-1]) * x0.double(), math.sqrt(1 - abar[-1])),
                                              normal(0.0, 1.0)).flatten(1).sum(1)
    kl = {"small": torch.zeros(3, dtype=torch.float64), "large": torch.zeros(3, dtype=torch.float64)}
    for k in range(1, steps):
        a_t, a_s = abar[k], abar[k - 1]
        beta = 1 - a_t / a_s
        post_var = (1 - a_s) / (1 - a_t) * beta
        coef = math.sqrt(a_s) * beta / (1 - a_t)
        # the x_t parts of both means cancel: only the x0 coefficient times the error remains
        q = normal(torch.zeros(3, 4, dtype=torch.float64), math.sqrt(post_var))
        for name, var in (("small", post_var), ("large", beta)):
            p = normal(torch.full((3, 4), coef * offset, dtype=torch.float64), math.sqrt(var))
            kl[name] += torch.distributions.kl_divergence(q, p).sum(1)
    edges = lambda v: (v - 1 / 255, v + 1 / 255)  # noqa: E731
    lo, hi = edges(x0.double().numpy().reshape(3, 4))
    lo[x0.numpy().reshape(3, 4) < -0.999] = -np.inf
    hi[x0.numpy().reshape(3, 4) > 0.999] = np.inf
    sd = math.sqrt(1 - abar[0])
    m = x0.double().numpy().reshape(3, 4) + offset
    decoder = np.log(stats.norm.cdf(hi, m, sd) - stats.norm.cdf(lo, m, sd)).sum(1)
    for name in ("small", "large"):
        expected = torch.from_numpy(decoder) - prior - kl[name]
        assert torch.allclose(out[f"vlb_{name}"], expected, atol=1e-4), name


def test_the_bound_prefers_a_better_denoiser():
    sched = NoiseSchedule.make("cosine", 100)
    x = torch.randint(0, 256, (8, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float() / 255
    good = variational_bound(sched, lambda x_t, t: (x * 2 - 1, None), x, 20, torch.Generator().manual_seed(0))
    bad = variational_bound(sched, lambda x_t, t: (torch.zeros_like(x_t), None), x, 20, torch.Generator())
    assert torch.all(good["vlb_large"] > bad["vlb_large"]) and torch.all(good["vlb_small"] > bad["vlb_small"])
    assert torch.all(good["vlb_small"] <= 0)


@pytest.mark.parametrize("size, patch, mults", [(8, 1, (1, 2)), (28, 2, (1, 2, 2)), (12, 1, (1, 2, 2)), (7, 1, (1, 2))])
def test_unet_keeps_the_image_shape(size, patch, mults):
    net = UNet(3, 8, mults, 1, 4, size, num_classes=5, patch=patch)
    x = torch.randn(2, 3, size, size)
    assert net(x, torch.tensor([0, 999]), torch.tensor([1, 5])).shape == x.shape


def test_diffusion_losses_are_finite_and_training_lowers_them():
    from genlab.core.batch import Batch

    model = _model(conditional=True, prediction="v", min_snr_gamma=5.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 8, 8, generator=g)
    batch = Batch(x, torch.randint(10, (32,), generator=g))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(60):
        loss, terms = model.phase_loss("denoiser", batch, torch.Generator().manual_seed(1))
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and float(loss.detach()) < 0.7 * first
