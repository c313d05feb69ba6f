"""Problems on shapes (pde.geometry): the shipped ones satisfy their equations and conditions,
Dirichlet, Neumann and Robin misfits on pieces against a hand computation with the exact
normals, conditions chosen by predicates, the evaluation grid masked to the region, training
from the command line, and every bad condition in one line."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from pinn.evaluation import grid_errors, make_eval_grid, predict_grid
from pinn.losses import loss_terms
from pinn.misfits import piece_values_per_point
from pinn.pdes import build_pde
from pinn.sampling import Sampler
from tests.conftest import compose_cfg
from tests.test_problems_nd import Exact

F64 = torch.float64
SHIPPED = ["laplace_lshape", "poisson_holes", "heat_annulus"]


def batch_of(pde, n=300, nb=200, seed=0):
    return Sampler("sobol", n, 50, nb, pde.domain, F64,
                   torch.Generator().manual_seed(seed)).sample()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_problems_satisfy_their_own_equations_and_conditions(name):
    pde = build_pde(compose_cfg([f"pde={name}"]).pde)
    batch = batch_of(pde)
    terms = loss_terms(Exact(pde), pde, batch)
    assert float(terms["res"].detach()) < 1e-20 and float(terms["bc"].detach()) < 1e-26
    bumped = loss_terms(Exact(pde, bump=1e-3), pde, batch)
    assert float(bumped["bc"]) > 1e-9


DISK = {"shape": "disk", "name": "rim", "center": [0.2, -0.1], "radius": 0.7}


def disk_problem(conditions):
    return build_pde({"name": "d", "axes": ["x", "y"], "geometry": DISK,
                      "residual": "lap(u) - 2", "exact": "x**2 + x*y",
                      "conditions": conditions})


def hand_misfit(points, kind, a=1.0, b=1.0):
    """The misfit of u = x^2 + x y on the disk's rim, by hand: normals (p - c) / r."""
    x, y = points[:, 0], points[:, 1]
    n = (points - torch.tensor([0.2, -0.1], dtype=F64)) / 0.7
    u = x ** 2 + x * y
    dudn = (2 * x + y) * n[:, 0] + x * n[:, 1]
    if kind == "dirichlet":
        return u - 0.5
    if kind == "neumann":
        return dudn - 0.5
    return a * u + b * dudn - 0.5


@pytest.mark.parametrize("kind, spec", [
    ("dirichlet", "0.5"),
    ("neumann", {"neumann": {"u": "0.5"}}),
    ("robin", {"robin": {"u": {"a": "2", "b": "0.5", "g": "0.5"}}}),
])
def test_piece_misfits_match_a_hand_computation(kind, spec):
    pde = disk_problem({"rim": spec})
    batch = batch_of(pde, nb=64)
    got = float(loss_terms(Exact(pde), pde, batch)["bc"])
    want = float(hand_misfit(batch.boundary[0], kind, a=2.0, b=0.5).square().mean())
    assert got == pytest.approx(want, rel=1e-12) and want > 1e-3


def test_the_normal_derivative_uses_the_outward_normal_of_a_hole():
    # u = x^2 + x y around a hole: du/dn with n pointing into the hole gives zero misfit; the
    # opposite sign does not.
    geometry = {"difference": [{"shape": "rectangle", "name": "box", "min": [-1, -1],
                                "max": [1, 1]}, {**DISK, "radius": 0.3}]}
    dudn = "-((2*x + y)*(x - 0.2) + x*(y + 0.1))/0.3"
    base = {"name": "h", "axes": ["x", "y"], "geometry": geometry, "residual": "lap(u) - 2",
            "exact": "x**2 + x*y"}
    good = build_pde({**base, "conditions": {"box": "x**2 + x*y",
                                             "rim": {"neumann": {"u": dudn}}}})
    assert float(loss_terms(Exact(good), good, batch_of(good))["bc"]) < 1e-26
    bad = build_pde({**base, "conditions": {"box": "x**2 + x*y",
                                            "rim": {"neumann": {"u": f"-({dudn})"}}}})
    assert float(loss_terms(Exact(bad), bad, batch_of(bad))["bc"]) > 1e-2


def test_where_conditions_come_first_and_split_a_piece():
    pde = build_pde({"name": "c", "axes": ["x", "y"], "outputs": ["u", "v"],
                     "geometry": {"shape": "rectangle", "name": "walls", "min": [0, 0],
                                  "max": [1, 1]},
                     "residual": ["lap(u)", "lap(v)"],
                     "conditions": {"walls": {"u": "0", "v": "0"},
                                    "lid": {"where": "y > 1 - 1e-9", "u": "1"}}})
    assert [e.label for e in pde.entries] == ["lid", "walls"]
    batch = batch_of(pde, nb=200)
    top = pde.region.piece_names().index("walls.top")
    # On the lid one value per point (u), elsewhere two (u and v).
    counts = piece_values_per_point(pde, top, batch.boundary[top])
    assert torch.all(counts == 1)
    left = pde.region.piece_names().index("walls.left")
    assert torch.all(piece_values_per_point(pde, left, batch.boundary[left]) == 2)

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros((), dtype=F64))

        def forward(self, p):
            return torch.zeros(p.shape[0], 2, dtype=F64)
    # Zero everywhere: only the lid's u = 1 misses, by 1, on (lid points) of all the values.
    n_lid = batch.boundary[top].shape[0]
    n_values = n_lid + 2 * sum(b.shape[0] for j, b in enumerate(batch.boundary) if j != top)
    bc = float(loss_terms(Zero(), pde, batch)["bc"])
    assert bc == pytest.approx(n_lid / n_values, rel=1e-12)


def test_the_evaluation_grid_is_masked_to_the_region():
    pde = build_pde(compose_cfg(["pde=poisson_holes", "pde.eval_points.x=41",
                                 "pde.eval_points.y=41"]).pde)
    grid = make_eval_grid(pde, compose_cfg(["pde=poisson_holes", "pde.eval_points.x=41",
                                            "pde.eval_points.y=41"]).pde)
    pts = grid.points()
    inside = ~(((pts[:, 0] - 0.3) ** 2 + (pts[:, 1] - 0.3) ** 2 < 0.01)
               | ((pts[:, 0] - 0.65) ** 2 + (pts[:, 1] - 0.6) ** 2 < 0.04))
    assert np.array_equal(grid.mask.reshape(-1), inside)
    assert np.isnan(grid.reference[..., 0][~grid.mask]).all()
    pred = predict_grid(Exact(pde, bump=1e-3), grid)
    assert np.isnan(pred[~grid.mask]).all() and np.isfinite(pred[grid.mask]).all()
    errs = grid_errors(pred, grid, pde)
    mesh = grid.mesh()
    bump = 1e-3 * np.exp(mesh["x"] + mesh["y"])[grid.mask]
    ref = grid.reference[..., 0][grid.mask]
    assert errs["l2_rel/u"] == pytest.approx(np.linalg.norm(bump) / np.linalg.norm(ref),
                                             rel=1e-9)


SQUARE = {"shape": "rectangle", "name": "sq", "min": [0, 0], "max": [1, 1]}
BASE = {"name": "b", "axes": ["x", "y"], "geometry": SQUARE, "residual": "lap(u)",
        "conditions": {"sq": "0"}}


@pytest.mark.parametrize("change, match", [
    ({"conditions": {"sq.left": "0"}},
     r"pde.conditions: the piece sq.right has no condition \(e.g. at .*\); give one "
     r"\(sq.right: \"0\" for u = 0\) or write sq.right: free"),
    ({"conditions": {"sq": "0", "hole": "0"}},
     r"pde.conditions.hole: no piece is called hole; the pieces are sq.left, sq.right, "
     r"sq.bottom, sq.top"),
    ({"conditions": {"sq": "0", "lid": {"where": "y > 2", "u": "1"}}},
     r"pde.conditions.lid.where: \"y > 2\" holds at no point"),
    ({"conditions": {"sq": "0", "lid": {"where": "y == 1", "u": "1"}}},
     r"pde.conditions.lid.where: only <, <=, >, >= compare here"),
    ({"conditions": {"sq": "0", "lid": {"u": "1"}}},
     r"pde.conditions.lid: no piece is called lid"),
    ({"conditions": {"sq": "0", "lid": {"where": "y > 0.9", "over": ["rim"], "u": "1"}}},
     r"pde.conditions.lid.over: rim is not a piece of the boundary"),
    ({"conditions": {"sq": {"robin": {"u": {"a": 1, "g": 0}}}}},
     r"pde.conditions.sq.robin.u: give a, b and g"),
    ({"conditions": {"sq": {"w": "0"}}}, r"pde.conditions.sq.w: not an output"),
    ({"conditions": {"sq": "0"}, "domain": {"x": [0, 1]}},
     r"pde.domain.x: with pde.geometry the shapes give the space axes' extent"),
    ({"conditions": {"sq": "0"}, "initial": "0"}, r"pde.initial: a steady problem"),
])
def test_bad_conditions_on_pieces_are_refused_in_one_line(change, match):
    with pytest.raises(ValueError, match=match) as info:
        build_pde({**BASE, **change})
    assert "\n" not in str(info.value)


def test_free_pieces():
    pde = build_pde({**BASE, "conditions": {"sq.left": "0", "sq.right": "0", "sq.top": "free",
                                            "sq.bottom": "free"}})
    assert [e.label for e in pde.entries] == ["sq.left", "sq.right", "sq.top", "sq.bottom"]


def test_a_problem_on_shapes_trains_and_evaluates(tmp_path):
    from pinn.evaluate import evaluate_run
    from pinn.paths import RunPaths
    from pinn.train import build_trainer

    cfg = compose_cfg(["pde=poisson_holes", "trainer.steps=40", "trainer.qn_steps=60",
                       "model.depth=2", "model.width=16", "sampler.n_interior=300",
                       "sampler.n_boundary=120", "precision=float64", "pde.eval_points.x=31",
                       "pde.eval_points.y=31", "trainer.eval_every=50", "trainer.progress=false",
                       "derivatives.compile=false"])
    m = build_trainer(cfg, RunPaths(tmp_path / "run")).fit()
    assert m["status"] == "completed" and m["error/l2_rel/u"] < 0.2 and "loss/bc" in m
    ev = evaluate_run(tmp_path / "run", tensorboard=False)
    assert ev["error/l2_rel/u"] == pytest.approx(m["error/l2_rel/u"], rel=1e-12)
    assert (tmp_path / "run" / "figures" / "u_fields.png").exists()


def test_a_bad_geometry_stops_the_command_line_in_one_line(tmp_path):
    from tests.conftest import run_cli

    r = run_cli(["pde=poisson_holes", "pde.geometry.difference.1.radius=-1",
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pde.geometry.difference[1].radius=-1 is not allowed" in lines[0]
    assert not (tmp_path / "run").exists()


def test_l_shape_polygon_and_difference_are_one_domain():
    poly = build_pde(compose_cfg(["pde=laplace_lshape"]).pde)
    assert poly.region.volume == pytest.approx(3.0) and poly.region.piece_names() == ("lshape",)
    assert poly.region.pieces[0].measure == pytest.approx(8.0)
    # The closed form vanishes on the re-entrant edges and is r^(2/3) on the diagonal theta=pi/2.
    p = torch.tensor([[0.5, 0.0], [0.0, -0.5], [0.0, 0.8]], dtype=F64)
    u = poly.exact_at(p)[:, 0]
    assert abs(float(u[0])) < 1e-15 and abs(float(u[1])) < 1e-15
    assert float(u[2]) == pytest.approx(0.8 ** (2 / 3) * math.sin(math.pi / 3), rel=1e-14)


class Flow(torch.nn.Module):
    """u = y^2, v = 0, p = x: a flow whose forces on the cylinder are known in closed form."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, p):
        x, y = p[:, :1], p[:, 1:2]
        return torch.cat([y * y, 0 * x, x], dim=1)


def test_quantities_integrate_the_traction_on_the_cylinder_exactly():
    from pinn.evaluation import quantity_errors, quantity_values

    pde = build_pde(compose_cfg(["pde=cylinder"]).pde)
    v = quantity_values(Flow(), pde)
    r, nu = 0.05, 1e-3
    # n points into the cylinder: int p n_x = -pi r^2; -nu u_y n_y = -nu 2y n_y gives
    # +2 nu pi r^2; the lift integrands are odd about the center line: 0.
    assert v["F_x"] == pytest.approx(-math.pi * r * r + 2 * nu * math.pi * r * r, rel=1e-13)
    assert abs(v["F_y"]) < 1e-17
    assert v["c_d"] == pytest.approx(2 * v["F_x"] / (0.2 ** 2 * 0.1), rel=1e-13)
    assert v["delta_p"] == pytest.approx(0.15 - 0.25, rel=1e-13)
    errs = quantity_errors(v, pde)
    assert errs["rel/c_d"] == pytest.approx(abs(v["c_d"] - 5.57953523384) / 5.57953523384)


@pytest.mark.parametrize("quantities, match", [
    ({"F": {"integral": "p*n_x", "over": "wall"}}, r"pde.quantities.F.over: wall is not a piece"),
    ({"F": {"integral": "p*n_z", "over": "cylinder"}}, r"pde.quantities.F.integral: .*n_z"),
    ({"F": {"integral": "p*n_x"}}, r"pde.quantities.F.over: give the piece"),
    ({"q": {"at": [0.2, 0.2], "value": "p"}}, r"pde.quantities.q.at: \[0.2, 0.2\] is outside "
                                              r"the domain"),
    ({"q": {"at": [0.5], "value": "p"}}, r"pde.quantities.q.at: 1 coordinate\(s\)"),
    ({"nu": "1"}, r"pde.quantities.nu: not allowed as a name"),
    ({"w": {"line": {"from": [0.2, 0.2], "to": [1, 0.2]}, "value": "u"}},
     r"pde.quantities.w.line.from: \[0.2, 0.2\] is outside the domain"),
    ({"w": {"line": {"from": [0.3, 0.2]}, "value": "u"}}, r"pde.quantities.w: a profile takes"),
    ({"q": "F_x + 1"}, r"pde.quantities.q: .*F_x"),
])
def test_bad_quantities_are_refused_in_one_line(quantities, match):
    cfg = compose_cfg(["pde=cylinder"]).pde
    from omegaconf import OmegaConf
    spec = OmegaConf.to_container(cfg, resolve=True)
    spec["quantities"] = quantities
    spec["reference_quantities"] = {}
    with pytest.raises(ValueError, match=match) as info:
        build_pde(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["poisson_holes", "cylinder", "heat_annulus"])
def test_distance_functions_hold_every_dirichlet_condition_exactly(name):
    from pinn.nn import build_model

    cfg = compose_cfg([f"pde={name}", "model.hard_boundary=true", "precision=float64",
                       "model.width=8", "model.depth=2"])
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde)
    batch = batch_of(pde, nb=400)
    worst, checked = 0.0, 0
    for j, pts in enumerate(batch.boundary):
        out = model(pts)
        for e in pde.entries:
            for c in e.conditions:
                if j in e.pieces and c.kind == "dirichlet":
                    g = pde.condition_values(c, pts)
                    worst = max(worst, float((out[:, list(c.outputs)] - g).abs().max()))
                    checked += pts.shape[0]
    assert checked > 100 and worst < 1e-13
    # Inside, the network is free: the outputs differ from the boundary interpolation.
    terms = loss_terms(model, pde, batch)
    assert float(terms["res" if "res" in terms else next(iter(terms))]) > 0
    # The loss keeps only what is not imposed: poisson_holes' Neumann hole.
    assert ("bc" in terms) == any(c.kind != "dirichlet" for e in pde.entries
                                  for c in e.conditions)


def test_a_segment_distance_is_normalized():
    from pinn.geometry.shapes import segment_distance

    phi = segment_distance((0.0, 0.0), (2.0, 0.0))
    x = torch.linspace(0.1, 1.9, 7, dtype=F64)
    on = torch.stack([x, torch.zeros_like(x)], 1)
    assert float(phi(on).abs().max()) < 1e-15
    h = 1e-6
    up = torch.stack([x, torch.full_like(x, h)], 1)
    assert torch.allclose(phi(up) / h, torch.ones(7, dtype=F64), atol=1e-5)  # d phi / dn = 1
    far = torch.tensor([[1.0, 0.5], [3.0, 0.0], [-1.0, 1.0]], dtype=F64)
    assert torch.all(phi(far) > 0.1)  # zero on the segment only, not on its line


def test_a_box_face_distance_vanishes_on_the_face_only():
    from pinn.geometry.shapes import face_distance

    phi = face_distance((0.0, 0.0, 0.0), (1.0, 2.0, 3.0), axis=2, upper_side=True)
    g = torch.Generator().manual_seed(0)
    on = torch.rand(200, 3, dtype=F64, generator=g) * torch.tensor([1.0, 2.0, 0.0], dtype=F64)
    on[:, 2] = 3.0
    assert float(phi(on).abs().max()) < 1e-15
    # the rest of the plane z = 3: beyond each edge and beyond the corners
    off = torch.tensor([[1.05, 1.0, 3.0], [-0.05, 1.0, 3.0], [0.5, 2.05, 3.0],
                        [0.5, -0.05, 3.0], [1.05, 2.05, 3.0], [3.0, 5.0, 3.0]], dtype=F64)
    assert bool((phi(off) > 1e-4).all())
    h = 1e-6
    below = on.clone()
    below[:, 2] -= h
    inner = (on[:, 0] > 0.01) & (on[:, 0] < 0.99) & (on[:, 1] > 0.01) & (on[:, 1] < 1.99)
    torch.testing.assert_close(phi(below)[inner] / h, torch.ones(int(inner.sum()), dtype=F64),
                               atol=1e-5, rtol=0)  # d phi / dn = 1


def test_hard_initial_and_boundary_conditions_on_shapes_hold_together():
    """heat_annulus: u = u0 at t = 0 everywhere and u = g on the Dirichlet circle at every t,
    to rounding; the loss keeps the Neumann circle and the residual only."""
    from pinn.nn import build_model

    cfg = compose_cfg(["pde=heat_annulus", "model.hard_boundary=true", "model.hard_initial=true",
                       "precision=float64", "model.width=8", "model.depth=2"])
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde)
    batch = batch_of(pde, nb=400)
    start = batch.interior.clone()
    start[:, -1] = 0.0
    assert float((model(start) - pde.initial_at(start)).abs().max()) < 1e-15
    outer = next(j for j, rp in enumerate(pde.region.pieces) if rp.name == "outer")
    pts = batch.boundary[outer]
    assert float(pts[:, -1].min()) < 0.2 and float(pts[:, -1].max()) > 0.8
    g = pde.exact_at(pts)  # the outer circle's value is the closed form
    assert float((model(pts) - g).abs().max()) < 1e-14
    assert float((model(batch.interior) - pde.exact_at(batch.interior)).abs().max()) > 1e-3
    terms = loss_terms(model, pde, batch)
    assert set(terms) == {"res", "bc"}  # bc: the Neumann circle


def test_hard_initial_and_boundary_on_shapes_refuse_incompatible_data():
    from pinn.nn import build_model

    cfg = compose_cfg(["pde=heat_annulus", "model.hard_boundary=true", "model.hard_initial=true",
                       "pde.initial='1 + sin(pi*x)*sin(pi*y)'"])
    with pytest.raises(ValueError, match=r"the initial value of u and its Dirichlet value on "
                                         r"outer differ at t = 0 \(by up to 1\)") as info:
        build_model(cfg, build_pde(cfg.pde))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change, match", [
    (["+pde.conditions.lid={where: 'x > 2', u: '0', v: '0'}"],
     r"model.hard_boundary=true imposes Dirichlet conditions on whole pieces; "
     r"pde.conditions.lid|shares its points"),
])
def test_hard_conditions_on_shapes_refuse_what_they_cannot_impose(change, match):
    from pinn.nn import build_model

    cfg = compose_cfg(["pde=cylinder", "model.hard_boundary=true", *change])
    with pytest.raises(ValueError, match=match) as info:
        build_model(cfg, build_pde(cfg.pde))
    assert "\n" not in str(info.value)


def test_hard_conditions_refuse_a_piece_cut_inside_the_domain():
    from pinn.nn.distance import build_distance_constraint

    pde = build_pde({"name": "u", "axes": ["x", "y"],
                     "geometry": {"union": [{"shape": "disk", "name": "a", "center": [0, 0],
                                             "radius": 1},
                                            {"shape": "disk", "name": "b", "center": [1, 0],
                                             "radius": 1}]},
                     "residual": "lap(u)", "conditions": {"a": "0", "b": "0"}})
    with pytest.raises(ValueError, match=r"part of the piece a lies inside the domain"):
        build_distance_constraint(pde, False)
    # A distance that is not positive inside the domain is refused (a stand-in that vanishes
    # on the plane y = 0.5 through the middle of a box).
    box = build_pde({"name": "s", "axes": ["x", "y", "z"], "geometry": BOX3,
                     "residual": "lap(u)", "conditions": {"b": "0"}})
    rp = box.region.pieces[0]
    object.__setattr__(rp, "piece", dataclasses.replace(rp.piece, distance=lambda p: p[:, 1] - 0.5))
    with pytest.raises(ValueError, match=r"the distance function of the piece b.x_min vanishes "
                                         r"or changes sign inside the domain") as info:
        build_distance_constraint(box, False)
    assert "\n" not in str(info.value)


BOX3 = {"shape": "box", "name": "b", "min": [0, 0, 0], "max": [1, 1, 1]}
SHAPES3 = {
    "box": ({"shape": "box", "name": "b", "min": [0, 0, 0], "max": [1, 2, 1]}, ["b"]),
    "sphere": ({"shape": "sphere", "name": "s", "center": [0, 0, 0], "radius": 1}, ["s"]),
    "cylinder": ({"shape": "cylinder", "name": "c", "base": [0, 0, 0], "radius": 0.5,
                  "height": 2, "axis": "y"}, ["c"]),
    "box_minus_sphere": ({"difference": [BOX3, {"shape": "sphere", "name": "s",
                                                "center": [0.5, 0.5, 0.5], "radius": 0.2}]},
                         ["b", "s"]),
    "box_minus_cylinder": ({"difference": [BOX3, {"shape": "cylinder", "name": "c",
                                                  "base": [0.5, 0.5, 0.3], "radius": 0.2,
                                                  "height": 0.4, "axis": "z"}]}, ["b", "c"]),
    # a step: the face z = 1 of b ends where the taller box begins
    "step": ({"union": [BOX3, {"shape": "box", "name": "tall", "min": [1, 0, 0],
                               "max": [2, 1, 3]}]}, ["b", "tall"]),
}


@pytest.mark.parametrize("name", sorted(SHAPES3))
def test_distance_functions_in_three_dimensions(name):
    """Each Dirichlet piece's distance is zero on the piece, its derivative along the inward
    normal 1 there (central differences about a point 1e-4 inside), positive inside; the
    transform takes the boundary values exactly."""
    from pinn.nn.distance import build_distance_constraint

    geometry, shapes = SHAPES3[name]
    pde = build_pde({"name": "u", "axes": ["x", "y", "z"], "geometry": geometry,
                     "residual": "lap(u)", "conditions": {n: "1 + x * y - z" for n in shapes}})
    constraint = build_distance_constraint(pde, False)
    region = pde.region
    u = (torch.arange(400, dtype=F64)[:, None] + 0.5) / 400
    unit = torch.cat([u, torch.remainder(u * 7.31, 1.0)], 1)  # (400, 2) spread on the piece
    inside = region.interior_space(500, lambda m: torch.rand(m, 3, dtype=F64,
                                                             generator=torch.Generator()
                                                             .manual_seed(m)))
    N = torch.randn(400, 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    for j, rp in enumerate(region.pieces):
        p, n = rp.piece.draw(unit)
        n = -n if rp.flip else n
        keep = region._keep(p, n)
        p, inward = p[keep], -n[keep]
        assert p.shape[0] > 50
        assert float(constraint._distance(j, p).abs().max()) < 1e-15, rp.name
        h = 1e-4
        a = p + (1 + 1e-4) * h * inward  # away from the piece, where phi is smooth
        d = (constraint._distance(j, a + 1e-6 * inward)
             - constraint._distance(j, a - 1e-6 * inward)) / 2e-6
        torch.testing.assert_close(d, torch.ones_like(d), atol=2e-3, rtol=0)
        assert bool((constraint._distance(j, inside) > 0).all()), rp.name
        out = constraint(p, N[: p.shape[0]])
        want = 1 + p[:, 0] * p[:, 1] - p[:, 2]
        assert float((out[:, 0] - want).abs().max()) < 1e-14, rp.name
    # The network with the transform: the loss has no boundary term and a finite residual
    from pinn.nn import build_model

    cfg = compose_cfg(["pde=poisson3d", "model.hard_boundary=true", "precision=float64",
                       "model.width=8", "model.depth=2"])
    model = build_model(cfg, pde)
    terms = loss_terms(model, pde, batch_of(pde, n=100, nb=60))
    assert set(terms) == {"res"} and bool(torch.isfinite(terms["res"]))


class Smooth(torch.nn.Module):
    """Two outputs that miss every condition: sin(3x) y and x y^2."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, p):
        return torch.stack([torch.sin(3 * p[:, 0]) * p[:, 1], p[:, 0] * p[:, 1] ** 2], 1)


HOLES_LIKE = {"difference": [{"shape": "rectangle", "name": "walls", "min": [0, 0],
                              "max": [1, 1]},
                             {"shape": "disk", "name": "hole", "center": [0.5, 0.5],
                              "radius": 0.2}]}


def test_the_ranks_bc_terms_on_pieces_sum_to_the_single_process_term():
    # A where entry with one output beside walls with two: the values per point are uneven,
    # so the shares must count values, not points.
    from pinn import distributed
    from pinn.misfits import piece_values_per_point

    pde = build_pde({"name": "c", "axes": ["x", "y"], "outputs": ["u", "v"],
                     "geometry": HOLES_LIKE, "residual": ["lap(u)", "lap(v)"],
                     "conditions": {"walls": {"u": "0", "v": "0"},
                                    "hole": {"neumann": {"u": "0"}},
                                    "lid": {"where": "y > 1 - 1e-9", "u": "1"}}})
    batch = batch_of(pde, nb=101)
    model = Smooth()
    whole = float(loss_terms(model, pde, batch)["bc"])
    for world in (2, 3):
        total = 0.0
        for r in range(world):
            group = distributed.Group(r, world, r, "gloo", torch.device("cpu"))
            local, shares = distributed.shard_batch(
                batch, group, None, lambda j, p: piece_values_per_point(pde, j, p))
            terms = loss_terms(model, pde, local, shares={**shares, "data": 1.0})
            total += float(terms["bc"]) if "bc" in terms else 0.0
        assert total == pytest.approx(whole, rel=1e-12)


def test_profiles_along_a_line_are_written_with_their_coordinates(tmp_path):
    from pinn.evaluation import profiles, write_profiles

    pde = build_pde(compose_cfg(["pde=cylinder"]).pde)
    got = profiles(Flow(), pde)["wake_u"]  # u = y^2 on y = 0.2 from x = 0.25 to 2.2
    assert got.shape == (196, 4)
    assert np.allclose(got[:, 1], np.linspace(0.25, 2.2, 196), atol=1e-15)
    assert np.allclose(got[:, 3], 0.04, atol=1e-15) and got[-1, 0] == pytest.approx(1.95)
    write_profiles({"wake_u": got}, tmp_path, pde)
    back = np.loadtxt(tmp_path / "wake_u.csv", delimiter=",", skiprows=1)
    assert np.array_equal(back, got)
    assert (tmp_path / "wake_u.csv").read_text().splitlines()[0] == "s,x,y,wake_u"


def test_synthetic_observations_lie_in_the_region():
    from pinn.data import synthesize

    pde = build_pde(compose_cfg(["pde=poisson_holes"]).pde)
    obs = synthesize(pde, 300, 0.0, 0, counts={"x": 21, "y": 21})
    pts = torch.as_tensor(np.stack([obs["x"], obs["y"]], 1))
    assert bool(pde.region.inside(pts).all())
    exact = np.sin(np.pi * obs["x"]) * np.sin(np.pi * obs["y"])
    assert np.allclose(obs["u"], exact, atol=1e-15)


def test_distance_functions_are_finite_at_the_corners_of_dirichlet_pieces():
    from pinn.nn import build_model

    cfg = compose_cfg(["pde=poisson_holes", "model.hard_boundary=true", "precision=float64",
                       "model.width=8", "model.depth=2"])
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde)
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=F64,
                           requires_grad=True)
    out = model(corners)
    assert torch.isfinite(out).all() and float(out.abs().max()) < 1e-12  # u = 0 there
    near = corners.detach() + torch.tensor([[1e-3, 2e-3]], dtype=F64)
    near.requires_grad_(True)
    (g,) = torch.autograd.grad(model(near).sum(), near)
    assert torch.isfinite(g).all()
