"""Image-quality metrics on feature vectors: FID, KID, Inception Score, precision/recall, density/coverage.

All take pre-extracted features (N x D arrays); `genlab.modalities.image.features` turns images into features.
Statistics are float64. The Fréchet distance uses the symmetric form tr sqrt(A S2 A), A = sqrt(S1), whose
eigenvalues are real by construction: no complex sqrtm, and the factor A of the real set is cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from genlab.metrics.memorisation import nearest_neighbours, squared_distance_chunks


def _as_float64(features) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    if t.ndim != 2:
        raise ValueError(f"features must be N x D, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("features contain NaN or inf (are the samples finite?)")
    return t.to(torch.float64)


@dataclass
class GaussianStats:
    """Mean and covariance of a feature set, with the symmetric square root of the covariance cached."""

    mu: torch.Tensor
    sigma: torch.Tensor
    n: int
    _sqrt: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def from_features(cls, features) -> GaussianStats:
        x = _as_float64(features)
        if x.shape[0] < 2:
            raise ValueError("need at least 2 feature vectors for a covariance")
        mu = x.mean(0)
        xc = x - mu
        return cls(mu, xc.T @ xc / (x.shape[0] - 1), int(x.shape[0]))

    def sqrt_sigma(self) -> torch.Tensor:
        """Symmetric PSD square root via eigh (negative round-off eigenvalues clipped to 0)."""
        if self._sqrt is None:
            evals, evecs = torch.linalg.eigh(self.sigma)
            self._sqrt = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
        return self._sqrt


def frechet_distance(real: GaussianStats, fake: GaussianStats) -> tuple[float, dict]:
    """||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), with tr sqrt(S1 S2) = sum sqrt(eig(A S2 A)).

    A S2 A is similar to S1 S2 (A = S1^1/2), symmetric PSD, so its eigenvalues are real and >= 0 up to
    round-off; negative ones are clipped and reported in `notes`.
    """
    a = real.sqrt_sigma()
    m = a @ fake.sigma @ a
    m = (m + m.T) / 2
    evals = torch.linalg.eigvalsh(m)
    notes = {}
    scale = float(evals.abs().max()) or 1.0
    if float(evals.min()) < -1e-10 * scale:
        notes["clipped_negative_eigenvalues"] = int((evals < 0).sum())
        notes["most_negative_eigenvalue"] = float(evals.min())
    tr_covmean = float(evals.clamp_min(0).sqrt().sum())
    diff = real.mu - fake.mu
    value = float(diff @ diff) + float(real.sigma.trace()) + float(fake.sigma.trace()) - 2 * tr_covmean
    return value, notes


def kid(real_features, fake_features, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 2020) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with a polynomial kernel, mean and std over random subsets.

    Subsets are drawn as torch-fidelity draws them (numpy RandomState(seed).choice without replacement,
    real then fake per subset), so the same features and seed give the same figure in both tools.
    """
    x, y = _as_float64(real_features), _as_float64(fake_features)
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 features per set")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        xs = x[torch.from_numpy(rng.choice(x.shape[0], m, replace=False))]
        ys = y[torch.from_numpy(rng.choice(y.shape[0], m, replace=False))]
        values.append(_mmd2_unbiased(xs, ys, degree, gamma, coef0))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std(unbiased=False))


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float, coef0: float) -> float:
    m = x.shape[0]
    k_xx = (gamma * x @ x.T + coef0) ** degree
    k_yy = (gamma * y @ y.T + coef0) ** degree
    k_xy = (gamma * x @ y.T + coef0) ** degree
    sum_xx = k_xx.sum() - k_xx.diagonal().sum()
    sum_yy = k_yy.sum() - k_yy.diagonal().sum()
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def inception_score(probabilities, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> tuple[float, float]:
    """exp E_x KL(p(y|x) || p(y)), mean and std over `splits` chunks (Salimans et al. 2016).

    Rows are shuffled with numpy RandomState(seed) and cut at i*N//splits, as torch-fidelity does.
    """
    p = _as_float64(probabilities)
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(p.shape[0], dtype=torch.float64), atol=1e-4):
        raise ValueError("inception_score takes class probabilities (rows of non-negative numbers summing to 1)")
    n = p.shape[0]
    if shuffle:
        p = p[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    log_p = torch.log(p.clamp_min(1e-300))
    scores = []
    for i in range(splits):
        chunk, log_chunk = p[i * n // splits : (i + 1) * n // splits], log_p[i * n // splits : (i + 1) * n // splits]
        marginal = chunk.mean(0, keepdim=True)
        kl = (chunk * (log_chunk - torch.log(marginal.clamp_min(1e-300)))).sum(1)
        scores.append(math.exp(float(kl.mean())))
    s = torch.tensor(scores, dtype=torch.float64)
    return float(s.mean()), float(s.std(unbiased=False))


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row (the row itself excluded)."""
    return torch.cat([d2.kthvalue(k + 1, dim=1).values.sqrt() for _, d2 in squared_distance_chunks(x, x)])


def _within_balls(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each query, how many balls B(centre_i, radius_i) contain it."""
    return torch.cat([(d2.sqrt() <= radii[None]).sum(1) for _, d2 in squared_distance_chunks(queries, centres)])


def precision_recall(real_features, fake_features, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls as manifold estimates."""
    x, y = _as_float64(real_features), _as_float64(fake_features)
    precision = float((_within_balls(y, x, _kth_neighbour_radii(x, k)) > 0).double().mean())
    recall = float((_within_balls(x, y, _kth_neighbour_radii(y, k)) > 0).double().mean())
    return precision, recall


def density_coverage(real_features, fake_features, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020): real k-NN balls counted from the fake side."""
    x, y = _as_float64(real_features), _as_float64(fake_features)
    radii = _kth_neighbour_radii(x, k)
    density = float(_within_balls(y, x, radii).double().sum() / (k * y.shape[0]))
    nearest_fake, _ = nearest_neighbours(x, y)
    coverage = float((nearest_fake <= radii).double().mean())
    return density, coverage
