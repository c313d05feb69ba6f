"""Boxes in 1-3 space dimensions, with and without time: faces, their names, and the points the
sampler draws on them."""
import pytest
import torch

from pinn.coords import Axes, CoordinateError
from pinn.geometry import Domain
from pinn.sampling import Batch, Sampler

F64 = torch.float64


def box(names, bounds, periodic=()):
    return Domain(Axes.parse(names), bounds, periodic)


def test_faces_and_their_names():
    d2 = box(["x", "y"], [(0, 1), (-1, 2)])
    assert [f for f in d2.faces] == ["x_min", "x_max", "y_min", "y_max"]
    assert d2.face("top").name == "y_max" and d2.face("left").name == "x_min"
    assert d2.face("y_min").sign == -1.0 and d2.face("right").sign == 1.0
    assert d2.face_names() == ("left", "right", "bottom", "top")
    d3 = box(["x", "y", "z", "t"], [(0, 1)] * 4)
    assert d3.face("z_max").axis == 2 and d3.time == (0.0, 1.0)
    with pytest.raises(CoordinateError, match="pde.conditions.top: no such face; the faces are "
                                              "x_min, x_max, y_min, y_max, z_min, z_max"):
        d3.face("top")
    with pytest.raises(CoordinateError, match=r"pde.domain.y=\[1, 1\] is not allowed"):
        box(["x", "y"], [(0, 1), (1, 1)])
    with pytest.raises(CoordinateError, match="pde.periodic: 't' is not a space axis"):
        box(["x", "t"], [(0, 1), (0, 1)], periodic=["t"])


def test_boundary_points_are_split_by_face_measure():
    # Faces normal to x have length 2 (y span), faces normal to y length 1: 2/3 of the pairs.
    d = box(["x", "y"], [(0, 1), (0, 2)])
    assert d.boundary_split(60) == (20, 10)
    assert sum(d.boundary_split(61)) == 30
    d3 = box(["x", "y", "z"], [(0, 1), (0, 1), (0, 1)])
    assert d3.boundary_split(7) == (1, 1, 1)
    assert box(["x", "t"], [(0, 1), (0, 1)]).boundary_split(9) == (4,)


@pytest.mark.parametrize("names", [["x"], ["x", "t"], ["x", "y"], ["x", "y", "t"],
                                   ["x", "y", "z"], ["x", "y", "z", "t"]])
@pytest.mark.parametrize("kind", ["sobol", "uniform"])
def test_points_lie_in_their_sets(names, kind):
    bounds = [(-1.0, 2.0), (0.5, 1.0), (-3.0, -2.0), (0.0, 4.0)][: len(names)]
    d = box(names, bounds)
    s = Sampler(kind, 100, 30, 64, d, F64, torch.Generator().manual_seed(0))
    b = s.sample()
    dim = len(names)
    assert b.interior.shape == (100, dim) and d.inside(b.interior).all()
    lo, hi = torch.tensor(d.lower, dtype=F64), torch.tensor(d.upper, dtype=F64)
    if "t" in names:
        assert b.initial.shape == (30, dim) and d.inside(b.initial).all()
        assert torch.equal(b.initial[:, -1], torch.full((30,), d.lower[-1], dtype=F64))
    else:
        assert b.initial.shape == (0, dim)
    n_space = len([n for n in names if n != "t"])
    assert len(b.faces) == n_space
    assert sum(f.shape[0] for f in b.faces) == 64
    for i, f in enumerate(b.faces):
        m = f.shape[0] // 2
        assert torch.equal(f[:m, i], lo[i].expand(m)) and torch.equal(f[m:, i], hi[i].expand(m))
        others = [j for j in range(dim) if j != i]
        assert torch.equal(f[:m, others], f[m:, others])  # pairs share the other coordinates
        assert d.inside(f).all()
    assert b.interior.unique(dim=0).shape[0] == 100  # no repeated draws


def test_sobol_draws_are_seeded_and_resume_exactly():
    d = box(["x", "y", "t"], [(0, 1), (0, 2), (0, 1)])
    a = Sampler("sobol", 50, 10, 20, d, F64, torch.Generator().manual_seed(3))
    a.sample()
    state = a.state_dict()
    want = a.sample()
    b = Sampler("sobol", 50, 10, 20, d, F64, torch.Generator().manual_seed(3))  # a resume
    b.load_state_dict(state)
    got = b.sample()
    assert torch.equal(got.interior, want.interior) and torch.equal(got.initial, want.initial)
    assert all(torch.equal(g, w) for g, w in zip(got.faces, want.faces))
    again = Sampler("sobol", 50, 10, 20, d, F64, torch.Generator().manual_seed(3)).sample()
    assert not torch.equal(again.interior, want.interior)  # successive draws move on


def test_the_one_dimensional_form_keeps_its_columns_and_checkpoints():
    s = Sampler("sobol", 16, 4, 8, (-1.0, 1.0, 0.0, 2.0), F64, torch.Generator().manual_seed(0))
    b = s.sample()
    assert torch.equal(b.x_int, b.interior[:, :1]) and torch.equal(b.t_bc, b.faces[0][:, 1:])
    old = {"x_int": b.x_int, "t_int": b.t_int, "x_ic": b.x_ic, "t_ic": b.t_ic, "x_bc": b.x_bc,
           "t_bc": b.t_bc}  # a checkpoint written before points had d columns
    back = Batch.from_state(old, torch.device("cpu"))
    assert torch.equal(back.interior, b.interior) and torch.equal(back.faces[0], b.faces[0])
    new = Batch.from_state(b.state_dict(), torch.device("cpu"))
    assert torch.equal(new.initial, b.initial)
