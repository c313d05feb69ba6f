"""Collocation points: in the domain, reproducible from the seed, fresh on resampling."""
import pytest
import torch

from pinn.sampling import Sampler

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
