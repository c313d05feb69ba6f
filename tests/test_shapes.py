"""Shapes, set operations and regions: inside tests and normals against closed forms, boundary
points uniform by length and area (checked against arc length by quadrature), the kept parts of
pieces under set operations against analytic measures, exact counts, seeded and resumable
draws, and every bad geometry in one line."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from pinn.coords import Axes
from pinn.geometry.csg import build_shape
from pinn.geometry.config import region_from_config
from pinn.geometry.region import Region
from pinn.geometry.shapes import GeometryError
from pinn.sampling import Sampler

F64 = torch.float64
XY, XYT, XYZ = Axes(("x", "y"), False), Axes(("x", "y"), True), Axes(("x", "y", "z"), False)

L_POLY = {"shape": "polygon", "name": "L",
          "vertices": [[-1, -1], [0, -1], [0, 0], [1, 0], [1, 1], [-1, 1]]}
L_DIFF = {"difference": [{"shape": "rectangle", "name": "outer", "min": [-1, -1], "max": [1, 1]},
                         {"shape": "rectangle", "name": "notch", "min": [0, -1], "max": [1, 0]}]}
HOLES = {"difference": [{"shape": "rectangle", "name": "square", "min": [0, 0], "max": [1, 1]},
                        {"shape": "disk", "name": "small", "center": [0.3, 0.3], "radius": 0.1},
                        {"shape": "disk", "name": "large", "center": [0.65, 0.6],
                         "radius": 0.2}]}


def region(spec, axes=XY, time=None):
    return Region(axes, build_shape(spec, len(axes.space)), time)


def uniform(seed, cols):
    g = torch.Generator().manual_seed(seed)
    return lambda m: torch.rand(m, cols, generator=g, dtype=F64)


def random_points(n, lo, hi, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(lo, dtype=F64), torch.tensor(hi, dtype=F64)
    return lo + torch.rand(n, len(lo), generator=g, dtype=F64) * (hi - lo)


@pytest.mark.parametrize("spec, truth", [
    ({"shape": "disk", "center": [0.5, -1], "radius": 2},
     lambda p: (p[:, 0] - 0.5) ** 2 + (p[:, 1] + 1) ** 2 <= 4),
    ({"shape": "ellipse", "center": [1, 0], "radii": [2, 0.5]},
     lambda p: ((p[:, 0] - 1) / 2) ** 2 + (p[:, 1] / 0.5) ** 2 <= 1),
    (L_POLY, lambda p: (p.abs() <= 1).all(1) & ~((p[:, 0] > 0) & (p[:, 1] < 0))),
    (L_DIFF, lambda p: (p.abs() <= 1).all(1) & ~((p[:, 0] > 0) & (p[:, 1] < 0))),
    ({"union": [{"shape": "disk", "center": [0, 0], "radius": 1},
                {"shape": "rectangle", "min": [0, -0.5], "max": [2, 0.5]}]},
     lambda p: (p.norm(dim=1) <= 1) | ((p[:, 0] >= 0) & (p[:, 0] <= 2) & (p[:, 1].abs() <= 0.5))),
    ({"intersection": [{"shape": "disk", "center": [0, 0], "radius": 1},
                       {"shape": "disk", "center": [1, 0], "radius": 1}]},
     lambda p: (p.norm(dim=1) <= 1) & ((p - torch.tensor([1.0, 0])).norm(dim=1) <= 1)),
])
def test_inside_tests_are_exact_in_2d(spec, truth):
    shape = build_shape(spec, 2)
    p = random_points(20000, (-3, -3), (3, 3))
    assert torch.equal(shape.inside(p), truth(p))


@pytest.mark.parametrize("spec, truth", [
    ({"shape": "sphere", "center": [0, 0, 1], "radius": 1},
     lambda p: p[:, 0] ** 2 + p[:, 1] ** 2 + (p[:, 2] - 1) ** 2 <= 1),
    ({"shape": "cylinder", "base": [0, 0, -1], "radius": 0.5, "height": 2, "axis": "z"},
     lambda p: (p[:, :2].norm(dim=1) <= 0.5) & (p[:, 2] >= -1) & (p[:, 2] <= 1)),
    ({"shape": "cylinder", "base": [-1, 0, 0], "radius": 0.5, "height": 2, "axis": "x"},
     lambda p: (p[:, 1:].norm(dim=1) <= 0.5) & (p[:, 0] >= -1) & (p[:, 0] <= 1)),
    ({"difference": [{"shape": "box", "min": [-1, -1, -1], "max": [1, 1, 1]},
                     {"shape": "sphere", "center": [0, 0, 0], "radius": 0.5}]},
     lambda p: (p.abs() <= 1).all(1) & (p.norm(dim=1) >= 0.5)),
])
def test_inside_tests_are_exact_in_3d(spec, truth):
    shape = build_shape(spec, 3)
    p = random_points(20000, (-2, -2, -2), (2, 2, 2))
    assert torch.equal(shape.inside(p), truth(p))


def test_levels_are_signed_distances_where_the_shape_has_one():
    p = random_points(5000, (-2, -2), (2, 2))
    disk = build_shape({"shape": "disk", "center": [0, 0], "radius": 1}, 2)
    assert torch.allclose(disk.level(p), p.norm(dim=1) - 1, atol=1e-15)
    # The unit square as a polygon and as a rectangle: the same signed distance.
    poly = build_shape({"shape": "polygon", "vertices": [[0, 0], [1, 0], [1, 1], [0, 1]]}, 2)
    rect = build_shape({"shape": "rectangle", "min": [0, 0], "max": [1, 1]}, 2)
    assert torch.allclose(poly.level(p), rect.level(p), atol=1e-14)
    # Outside the square near a corner: the Euclidean distance to the corner.
    q = torch.tensor([[2.0, 3.0]], dtype=F64)
    assert float(rect.level(q)) == pytest.approx(math.hypot(1, 2), abs=1e-15)


def test_an_ellipse_boundary_is_uniform_by_arc_length_with_exact_normals():
    a, b = 2.0, 0.5
    r = region({"shape": "ellipse", "name": "e", "center": [0, 0], "radii": [a, b]})
    exact_perimeter = integrate.quad(lambda t: math.hypot(a * math.sin(t), b * math.cos(t)),
                                     0, 2 * math.pi, epsabs=1e-13)[0]
    assert r.pieces[0].measure == pytest.approx(exact_perimeter, rel=1e-9)
    n = 4000
    p, normal = r.boundary(0, n, uniform(0, 1))
    assert torch.allclose((p / torch.tensor([a, b], dtype=F64)).norm(dim=1),
                          torch.ones(n, dtype=F64), atol=1e-14)
    grad = p / torch.tensor([a * a, b * b], dtype=F64)  # the implicit function's gradient
    assert torch.allclose(normal, grad / grad.norm(dim=1, keepdim=True), atol=1e-14)
    # The arc length of each point, by quadrature, must be uniform on [0, perimeter).
    th = torch.atan2(p[:, 1] / b, p[:, 0] / a).numpy() % (2 * math.pi)
    s = np.array([integrate.quad(lambda t: math.hypot(a * math.sin(t), b * math.cos(t)),
                                 0, x)[0] for x in th[:400]]) / exact_perimeter
    from scipy.stats import kstest
    assert kstest(s, "uniform").pvalue > 0.01
    # A biased draw (uniform in the angle instead) fails the same test.
    th_bad = np.random.default_rng(0).uniform(0, 2 * math.pi, 400)
    s_bad = np.array([integrate.quad(lambda t: math.hypot(a * math.sin(t), b * math.cos(t)),
                                     0, x)[0] for x in th_bad]) / exact_perimeter
    assert kstest(s_bad, "uniform").pvalue < 0.01


def test_sphere_and_cylinder_pieces_are_uniform_by_area():
    r = region({"shape": "sphere", "name": "s", "center": [0, 0, 0], "radius": 2}, XYZ)
    p, n = r.boundary(0, 20000, uniform(1, 2))
    assert torch.allclose(p.norm(dim=1), torch.full((20000,), 2.0, dtype=F64), atol=1e-14)
    assert torch.allclose(n, p / 2, atol=1e-15)
    # Uniform by area: each octant holds 1/8 of the points (binomial spread ~0.2%).
    octant = ((p > 0).long() * torch.tensor([1, 2, 4])).sum(1)
    counts = torch.bincount(octant, minlength=8).double() / 20000
    assert (counts - 0.125).abs().max() < 0.01
    c = region({"shape": "cylinder", "name": "c", "base": [0, 0, 0], "radius": 1, "height": 3},
               XYZ)
    names = [q.name for q in c.pieces]
    assert names == ["c.side", "c.bottom", "c.top"]
    assert [q.measure for q in c.pieces] == pytest.approx([6 * math.pi, math.pi, math.pi])
    p, n = c.boundary(1, 20000, uniform(2, 2))  # the bottom cap: uniform in the disk
    assert torch.all(p[:, 2] == 0) and torch.all(n[:, 2] == -1)
    inner = (p[:, :2].norm(dim=1) < 1 / math.sqrt(2)).double().mean()  # half the area
    assert float(inner) == pytest.approx(0.5, abs=0.01)


def test_set_operations_keep_the_right_parts_of_each_piece():
    # Two unit disks 1 apart: each keeps 2/3 of its circle in the union, 1/3 in the
    # intersection; the difference keeps 2/3 of the first and 1/3 of the second (flipped).
    d1 = {"shape": "disk", "name": "a", "center": [0, 0], "radius": 1}
    d2 = {"shape": "disk", "name": "b", "center": [1, 0], "radius": 1}
    for op, fa, fb in (("union", 2 / 3, 2 / 3), ("intersection", 1 / 3, 1 / 3),
                       ("difference", 2 / 3, 1 / 3)):
        r = region({op: [d1, d2]})
        got = {q.name: q for q in r.pieces}
        assert got["a"].fraction == pytest.approx(fa, abs=2e-3)
        assert got["b"].fraction == pytest.approx(fb, abs=2e-3)
        assert got["b"].flip == (op == "difference")
    lens = (math.pi * 2 / 3 - math.sqrt(3) / 2)  # the lens' area: 2 r^2 acos(d/2r) - ...
    assert region({"intersection": [d1, d2]}).volume == pytest.approx(lens, rel=5e-3)


def test_the_l_shape_by_difference_has_the_right_pieces_and_normals():
    r = region(L_DIFF)
    got = {q.name: q for q in r.pieces}
    assert set(got) == {"outer.left", "outer.right", "outer.bottom", "outer.top",
                        "notch.left", "notch.top"}  # the notch's faces on outer's are gone
    assert got["outer.right"].measure == pytest.approx(1.0) and got["notch.top"].flip
    assert r.volume == pytest.approx(3.0)
    for j, q in enumerate(r.pieces):
        p, n = r.boundary(j, 200, uniform(j, 1))
        # Just inside along -n lies the domain; just outside along +n does not.
        assert torch.all(r.shape.level(p - 1e-6 * n) < 0)
        assert torch.all(r.shape.level(p + 1e-6 * n) > 0)
    j = r.piece_names().index("notch.top")
    p, n = r.boundary(j, 50, uniform(0, 1))
    assert torch.all(p[:, 1] == 0) and torch.all(p[:, 0] >= 0)
    assert torch.equal(n, torch.tensor([[0.0, -1.0]], dtype=F64).expand(50, 2))


def test_holes_normals_point_into_the_holes():
    r = region(HOLES)
    j = r.piece_names().index("large")
    p, n = r.boundary(j, 500, uniform(0, 1))
    c = torch.tensor([0.65, 0.6], dtype=F64)
    assert torch.allclose(n, -(p - c) / 0.2, atol=1e-14)
    assert r.volume == pytest.approx(1 - math.pi * (0.01 + 0.04), rel=2e-3)


def test_draws_have_exact_counts_are_seeded_and_resume():
    r = region(HOLES, XYT, (0.0, 2.0))
    s = Sampler("sobol", 1001, 77, 333, r, F64, torch.Generator().manual_seed(3))
    b = s.sample()
    assert b.interior.shape == (1001, 3) and b.initial.shape == (77, 3)
    assert torch.all(r.shape.level(b.interior[:, :2]) < 0)
    assert torch.all(b.initial[:, 2] == 0) and torch.all(r.shape.level(b.initial[:, :2]) < 0)
    assert sum(p.shape[0] for p in b.boundary) == 333
    assert [p.shape[0] for p in b.boundary] == list(r.boundary_split(333))
    assert all((p[:, 2] >= 0).all() and (p[:, 2] <= 2).all() for p in b.boundary)
    # Points per piece follow the pieces' lengths: the large hole's circle 0.4 pi of ~5.26.
    lengths = [q.measure for q in r.pieces]
    assert [p.shape[0] for p in b.boundary][5] == pytest.approx(333 * lengths[5] / sum(lengths),
                                                                abs=1.5)
    again = Sampler("sobol", 1001, 77, 333, r, F64, torch.Generator().manual_seed(3)).sample()
    assert torch.equal(b.interior, again.interior) and torch.equal(b.boundary[4], again.boundary[4])
    state = s.state_dict()
    nxt = s.sample()
    s2 = Sampler("sobol", 1001, 77, 333, r, F64, torch.Generator().manual_seed(3))  # a resume
    s2.load_state_dict(state)
    nxt2 = s2.sample()
    assert torch.equal(nxt.interior, nxt2.interior)
    assert all(torch.equal(a, b) for a, b in zip(nxt.normals, nxt2.normals))
    assert not torch.equal(nxt.interior, b.interior)
    # A batch survives its state dict (the checkpoint's form).
    from pinn.sampling import Batch
    back = Batch.from_state(b.state_dict(), torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(back.normals, b.normals))
    u = Sampler("uniform", 500, 0, 40, region(L_POLY), F64, torch.Generator().manual_seed(0))
    bu = u.sample()
    assert bu.interior.shape == (500, 2) and sum(p.shape[0] for p in bu.boundary) == 40


@pytest.mark.parametrize("spec, dim, match", [
    ({"shape": "polygon", "vertices": [[0, 0], [1, 1], [1, 0], [0, 1]]}, 2,
     r"pde.geometry: the polygon crosses itself \(edge 0 \[0.0, 0.0\]-\[1.0, 1.0\] meets edge 2"),
    ({"shape": "polygon", "vertices": [[0, 0], [1, 1]]}, 2, r"at least 3 distinct vertices"),
    ({"shape": "polygon", "vertices": [[0, 0], [1, 1], [2, 2]]}, 2, r"crosses itself|no area"),
    ({"shape": "circle", "center": [0, 0], "radius": 1}, 2,
     r"pde.geometry.shape='circle' is not allowed: one of rectangle, disk, ellipse, polygon, "
     r"box, sphere, cylinder"),
    ({"shape": "sphere", "center": [0, 0, 0], "radius": 1}, 2,
     r"pde.geometry.shape=sphere is a 3-D shape; this problem has 2 space axes: one of "
     r"rectangle, disk, ellipse, polygon"),
    ({"shape": "disk", "center": [0, 0], "radius": -1}, 2,
     r"pde.geometry.radius=-1 is not allowed: a number > 0"),
    ({"shape": "disk", "center": [0, 0]}, 2, r"pde.geometry.radius: missing"),
    ({"shape": "disk", "center": [0, 0], "radius": 1, "radii": 2}, 2,
     r"pde.geometry.radii: not a parameter of a disk"),
    ({"shape": "rectangle", "min": [0, 0], "max": [1, 0]}, 2, r"must exceed min"),
    ({"union": [{"shape": "disk", "center": [0, 0], "radius": 1}]}, 2,
     r"pde.geometry.union: a list of at least two shapes"),
    ({"union": [{"shape": "disk", "name": "a", "center": [0, 0], "radius": 1},
                {"shape": "disk", "name": "a", "center": [1, 0], "radius": 1}]}, 2,
     r"pde.geometry.union\[1\].name=a: also the name of pde.geometry.union\[0\]"),
    ({"wedge": 1}, 2, r"pde.geometry: give shape: <kind>"),
])
def test_bad_shapes_are_refused_in_one_line(spec, dim, match):
    with pytest.raises(GeometryError, match=match) as info:
        build_shape(spec, dim)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec, match", [
    ({"difference": [{"shape": "rectangle", "min": [0, 0], "max": [1, 1]},
                     {"shape": "rectangle", "min": [-1, -1], "max": [2, 2]}]},
     r"pde.geometry: the set operations leave an empty domain"),
    ({"intersection": [{"shape": "disk", "center": [0, 0], "radius": 1},
                       {"shape": "disk", "center": [3, 0], "radius": 1}]},
     r"pde.geometry: the set operations leave an empty domain"),
    ({"difference": [{"shape": "rectangle", "min": [0, 0], "max": [1, 1]},
                     {"shape": "disk", "name": "far", "center": [5, 5], "radius": 1}]},
     r"pde.geometry: the boundary of far lies nowhere on the domain's boundary \(a hole that "
     r"does not meet the domain"),
])
def test_empty_domains_and_stray_holes_are_refused(spec, match):
    with pytest.raises(GeometryError, match=match):
        region(spec)


def test_region_config_takes_only_time_from_the_domain():
    r = region_from_config(HOLES, XYT, {"t": [0, "pi"]})
    assert r.time == (0.0, pytest.approx(math.pi)) and r.lower[:2] == (0.0, 0.0)
    with pytest.raises(GeometryError, match=r"pde.domain.x: with pde.geometry the shapes give"):
        region_from_config(HOLES, XY, {"x": [0, 1]})
    with pytest.raises(GeometryError, match=r"pde.domain.t: give the time interval"):
        region_from_config(HOLES, XYT, {})
    with pytest.raises(GeometryError, match=r"pde.periodic: periodic axes are for boxes"):
        region_from_config(HOLES, XY, {}, ["x"])
    with pytest.raises(GeometryError, match=r"shapes are 2-D or 3-D"):
        region_from_config(HOLES, Axes(("x",), False), {})


def test_a_shape_density_refines_its_pieces_points():
    spec = {"difference": [{"shape": "rectangle", "name": "channel", "min": [0, 0],
                            "max": [2.2, 0.41]},
                           {"shape": "disk", "name": "cyl", "center": [0.2, 0.2],
                            "radius": 0.05, "density": 10}]}
    r = region(spec)
    split = dict(zip(r.piece_names(), r.boundary_split(2000)))
    length = {q.name: q.measure for q in r.pieces}
    # Points per unit length on the cylinder: 10 times those on the channel's sides.
    ratio = (split["cyl"] / length["cyl"]) / (split["channel.left"] / length["channel.left"])
    assert ratio == pytest.approx(10, rel=0.05)
    assert sum(split.values()) == 2000
    with pytest.raises(GeometryError, match=r"pde.geometry.difference\[1\].density=0 is not "
                                            r"allowed: a number > 0"):
        build_shape({"difference": [spec["difference"][0], {**spec["difference"][1],
                                                            "density": 0}]}, 2)


def test_rad_redraws_stay_in_the_region_with_exact_counts():
    r = region(HOLES)
    s = Sampler("sobol", 400, 0, 50, r, F64, torch.Generator().manual_seed(0), rad=(1.0, 1.0, 4))
    # A residual that is large near (0.9, 0.9): RAD must concentrate points there.
    residual = lambda p: torch.exp(-50 * ((p - 0.9) ** 2).sum(1))  # noqa: E731
    b = s.sample(residual)
    assert b.interior.shape == (400, 2) and torch.all(r.shape.level(b.interior) < 0)
    near = ((b.interior - 0.9).norm(dim=1) < 0.2).double().mean()
    plain = ((s.sample().interior - 0.9).norm(dim=1) < 0.2).double().mean()
    assert float(near) > 3 * float(plain)


def test_a_three_dimensional_problem_on_shapes_trains(tmp_path):
    from omegaconf import OmegaConf

    from pinn.paths import RunPaths
    from pinn.train import build_trainer
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["pde=poisson3d", "trainer.steps=5", "trainer.qn_steps=3",
                       "model.depth=2", "model.width=8", "sampler.n_interior=200",
                       "sampler.n_boundary=60", "trainer.progress=false",
                       "log.tensorboard=false", "derivatives.compile=false"])
    OmegaConf.set_struct(cfg, False)
    cfg.pde.domain = {}
    cfg.pde.geometry = {"difference": [{"shape": "box", "name": "cube", "min": [0, 0, 0],
                                        "max": [1, 1, 1]},
                                       {"shape": "sphere", "name": "ball",
                                        "center": [0.5, 0.5, 0.5], "radius": 0.25}]}
    cfg.pde.conditions = {"cube": "0", "ball": {"robin": {"u": {"a": 1, "b": 0.1, "g": 0}}}}
    cfg.pde.eval_points = {"x": 9, "y": 9, "z": 9}
    m = build_trainer(cfg, RunPaths(tmp_path / "run")).fit()
    assert m["status"] == "completed" and np.isfinite(m["loss/bc"])
