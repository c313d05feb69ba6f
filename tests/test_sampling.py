"""Collocation points: in the domain, reproducible from the seed, fresh on resampling."""
import pytest
import torch

from pinn.sampling import Sampler, rad_probabilities, rad_select

DOMAIN = (-1.0, 2.0, 0.5, 1.5)


def make(kind, seed=0, n=(100, 20, 30)):
    return Sampler(kind, *n, DOMAIN, torch.float64, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["uniform", "sobol"])
def test_points_lie_in_their_sets(kind):
    b = make(kind).sample()
    assert b.x_int.shape == (100, 1) and b.x_ic.shape == (20, 1) and b.x_bc.shape == (30, 1)
    assert b.x_int.min() >= -1 and b.x_int.max() <= 2 and b.t_int.min() >= 0.5 and b.t_int.max() <= 1.5
    assert torch.all(b.t_ic == 0.5)
    assert (b.x_bc == -1).sum() == 15 and (b.x_bc == 2).sum() == 15
    assert b.t_bc.min() >= 0.5 and b.t_bc.max() <= 1.5
    assert b.x_int.dtype == torch.float64


@pytest.mark.parametrize("kind", ["uniform", "sobol"])
def test_seed_fixes_the_draw_and_resampling_gives_new_points(kind):
    a, b, c = make(kind, 3), make(kind, 3), make(kind, 4)
    a1, b1, c1 = a.sample(), b.sample(), c.sample()
    assert torch.equal(a1.x_int, b1.x_int) and torch.equal(a1.t_bc, b1.t_bc)
    assert not torch.equal(a1.x_int, c1.x_int)
    a2 = a.sample()
    assert not torch.equal(a1.x_int, a2.x_int)


def test_sobol_covers_the_domain_more_evenly_than_uniform():
    """Discrepancy proxy: the largest empty cell count on a 10 x 10 grid of 1,000 points."""
    def worst_cell_deviation(s):
        b = s.sample()
        ix = ((b.x_int[:, 0] + 1) / 3 * 10).long().clamp(max=9)
        it = ((b.t_int[:, 0] - 0.5) * 10).long().clamp(max=9)
        counts = torch.bincount(ix * 10 + it, minlength=100)
        return (counts - 10).abs().max().item()

    sobol = make("sobol", n=(1000, 1, 0))
    uniform = make("uniform", n=(1000, 1, 0))
    assert worst_cell_deviation(sobol) < worst_cell_deviation(uniform)


def test_state_round_trip_continues_the_same_sequence():
    a = make("sobol", 1)
    a.sample()
    state = a.state_dict()
    nxt = a.sample()
    b = make("sobol", 1)
    b.load_state_dict(state)
    assert torch.equal(b.sample().x_int, nxt.x_int)


# -- residual-based adaptive distribution (RAD) ----------------------------------------------
def test_rad_probabilities_follow_eq_2():
    eps = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=torch.float64)
    for k, c in [(1.0, 1.0), (2.0, 0.5), (0.0, 1.0), (1.0, 0.0)]:
        w = eps**k / (eps**k).mean() + c
        assert torch.allclose(rad_probabilities(eps, k, c), w / w.sum(), rtol=1e-15, atol=0)
    assert torch.equal(rad_probabilities(torch.zeros(4), 1.0, 0.0), torch.full((4,), 0.25,
                                                                             dtype=torch.float64))


def test_rad_draws_without_replacement_in_proportion_to_the_residual():
    """Half the candidates have residual 0, half residual 1: with k = 1, c = 1 the weights are
    1 and 3, so a small draw takes about 3/4 of its points from the second half; with c = 0,
    all of them."""
    m, n = 100_000, 2_000
    eps = torch.cat([torch.zeros(m // 2), torch.ones(m // 2)])
    idx = rad_select(eps, n, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert idx.unique().numel() == n
    share = (idx >= m // 2).double().mean().item()
    assert abs(share - 0.75) < 4 * (0.75 * 0.25 / n) ** 0.5  # binomial 4-sigma band
    idx = rad_select(eps, n, 1.0, 0.0, torch.Generator().manual_seed(0))
    assert bool((idx >= m // 2).all())


def test_rad_sampler_is_seeded_resumable_and_puts_points_where_the_residual_is():
    """A residual concentrated near x = 0.5 (a 'shock'): the adaptive draw has far more points
    there than a plain draw, the same seed gives the same points, and a sampler restored from
    state_dict continues the same sequence."""
    def residual(p):  # (M, 2) -> (M,)
        return torch.exp(-((p[:, 0] - 0.5) / 0.05) ** 2) * 100

    def sampler(seed):
        return Sampler("sobol", 2000, 20, 20, DOMAIN, torch.float64,
                       torch.Generator().manual_seed(seed), rad=(1.0, 1.0, 5))

    a, b = sampler(3), sampler(3)
    near = lambda batch: ((batch.x_int - 0.5).abs() < 0.1).double().mean().item()  # noqa: E731
    plain, adaptive = a.sample(), a.sample(residual)
    assert torch.equal(b.sample().x_int, plain.x_int)
    assert torch.equal(b.sample(residual).x_int, adaptive.x_int)
    # The band is 1/15 of the domain; without replacement at most its ~667 candidates of
    # 10,000 can be drawn (a third of 2,000 points).
    assert near(plain) < 0.1 and near(adaptive) > 0.2
    state = a.state_dict()
    after = a.sample(residual)
    c = sampler(3)  # a resumed run rebuilds its sampler from the same seed
    c.load_state_dict(state)
    assert torch.equal(c.sample(residual).x_int, after.x_int)
