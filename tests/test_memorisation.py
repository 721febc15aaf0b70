import torch

from genlab.metrics.memorisation import memorisation_report, nearest_neighbours


def test_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(0)
    q, r = torch.rand(37, 1, 5, 5, generator=g), torch.rand(101, 1, 5, 5, generator=g)
    dist, idx = nearest_neighbours(q, r, chunk=8)
    full = torch.cdist(q.flatten(1).double(), r.flatten(1).double())
    torch.testing.assert_close(dist, full.min(1).values)
    assert torch.equal(idx, full.argmin(1))


def test_copies_are_caught_and_fresh_samples_are_not():
    g = torch.Generator().manual_seed(1)
    centres = torch.rand(10, 64, generator=g)
    def draw(n):
        return (centres[torch.randint(10, (n,), generator=g)] + 0.1 * torch.randn(n, 64, generator=g)).view(n, 1, 8, 8)
    train, test, fresh = draw(500), draw(200), draw(100)
    copied = train[:100] + 1e-3 * torch.randn(100, 1, 8, 8, generator=g)
    honest = memorisation_report(fresh, train, test)
    cheat = memorisation_report(copied, train, test)
    assert honest["copies"] <= 3 and honest["fraction_below_test_p01"] < 0.05
    assert cheat["copies"] == 100 and cheat["median_ratio"] < 0.1
    assert cheat["verdict"] == "100 samples look copied"
