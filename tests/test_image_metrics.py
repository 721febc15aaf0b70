"""Image metrics against closed forms and their defining properties."""

import math

import numpy as np
import pytest
import torch

from genlab.metrics.image import (
    GaussianStats,
    density_coverage,
    frechet_distance,
    inception_score,
    kid,
    precision_recall,
)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    a = GaussianStats(torch.tensor(mu1), torch.diag(torch.tensor(v1)), 10)
    b = GaussianStats(torch.tensor(mu2), torch.diag(torch.tensor(v2)), 10)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    value, notes = frechet_distance(a, b)
    assert value == pytest.approx(expected, rel=1e-6)
    assert notes == {}


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances():
    from scipy import linalg

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(500, 20)), rng.normal(size=(400, 20)) @ rng.normal(size=(20, 20)) * 0.3 + 0.2
    a, b = GaussianStats.from_features(x), GaussianStats.from_features(y)
    s1, s2 = a.sigma.numpy(), b.sigma.numpy()
    covmean = linalg.sqrtm(s1 @ s2).real
    diff = a.mu.numpy() - b.mu.numpy()
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(a, b)[0] == pytest.approx(expected, rel=1e-6)


def test_near_singular_covariance_is_handled_and_reported():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 50))  # 10 samples in 50-d: covariance of rank 9
    a = GaussianStats.from_features(x)
    value, _ = frechet_distance(a, a)
    assert abs(value) < 1e-6 * float(a.sigma.trace())
    b = GaussianStats.from_features(rng.normal(size=(10, 50)))
    value, _ = frechet_distance(a, b)
    assert math.isfinite(value) and value > 0


def test_fid_and_kid_are_zero_on_identical_sets_and_grow_with_shift():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 16))
    assert abs(frechet_distance(GaussianStats.from_features(x), GaussianStats.from_features(x))[0]) < 1e-8
    fids, kids = [], []
    for shift in (0.0, 0.1, 0.3, 1.0):
        y = rng.normal(size=(2000, 16)) + shift
        fids.append(frechet_distance(GaussianStats.from_features(x), GaussianStats.from_features(y))[0])
        kids.append(kid(x, y, subsets=20, subset_size=500)[0])
    assert fids == sorted(fids) and kids == sorted(kids)
    assert kids[-1] > 10 * abs(kids[0])


def test_kid_is_unbiased():
    rng = np.random.default_rng(4)
    means = [kid(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), subsets=10, subset_size=100, seed=s)[0]
             for s in range(60)]
    se = np.std(means) / np.sqrt(len(means))
    assert abs(np.mean(means)) < 3 * se + 1e-6  # an unbiased estimator averages to 0 within its error


def test_precision_recall_extremes():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 5))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)
    density, coverage = density_coverage(x, x + 100.0)
    assert density == 0.0 and coverage == 0.0
    density, coverage = density_coverage(x, x)
    assert coverage == 1.0 and density >= 1.0


def test_precision_recall_detect_mode_dropping():
    rng = np.random.default_rng(6)
    real = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 20])
    fake = rng.normal(size=(600, 2))  # covers one of the two modes only
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9 and 0.35 < recall < 0.65
    assert 0.35 < density_coverage(real, fake)[1] < 0.65


def test_inception_score_of_confident_balanced_predictions_is_number_of_classes():
    c = 10
    probs = torch.eye(c).repeat(100, 1)
    mean, std = inception_score(probs, shuffle=False)  # every split holds each class equally often
    assert mean == pytest.approx(c, rel=1e-6) and std < 1e-6
    uniform = torch.full((1000, c), 1 / c)
    assert inception_score(uniform)[0] == pytest.approx(1.0)


def test_metrics_refuse_nan_features():
    x = np.ones((10, 3))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GaussianStats.from_features(x)
