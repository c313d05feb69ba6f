"""Domains from point files: reading the files (points, normals, piece ids), draws from them,
conditions on their pieces (Neumann with the file's normals), the approximate inside test of
the evaluation grid, and every bad file in one line."""
import numpy as np
import pytest
import torch

from pinn.geometry.shapes import GeometryError
from pinn.losses import loss_terms
from pinn.pdes import build_pde
from pinn.sampling import Sampler
from tests.test_problems_nd import Exact

F64 = torch.float64


def write_square_with_hole(folder, normals=True, ids=True, n=60):
    """The unit square minus the disk of radius 0.2 at (0.5, 0.5): interior points on a grid,
    boundary points with outward normals, ids 1 (square) and 2 (hole)."""
    g = np.linspace(0.0, 1.0, n)
    X, Y = np.meshgrid(g[1:-1], g[1:-1])
    inside = (X - 0.5) ** 2 + (Y - 0.5) ** 2 > 0.2 ** 2
    np.savetxt(folder / "interior.txt", np.stack([X[inside], Y[inside]], 1),
               header="x y", comments="% ")
    rows = []
    s = np.linspace(0, 1, 50, endpoint=False) + 0.01
    for x, y, nx, ny in ([s, 0 * s, 0 * s, -1 + 0 * s], [s, 1 + 0 * s, 0 * s, 1 + 0 * s],
                         [0 * s, s, -1 + 0 * s, 0 * s], [1 + 0 * s, s, 1 + 0 * s, 0 * s]):
        rows.append(np.stack([x, y, nx, ny, np.ones_like(s)], 1))
    th = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    rows.append(np.stack([0.5 + 0.2 * np.cos(th), 0.5 + 0.2 * np.sin(th), -np.cos(th),
                          -np.sin(th), 2 * np.ones_like(th)], 1))
    table = np.concatenate(rows)
    cols = [0, 1] + ([2, 3] if normals else []) + ([4] if ids else [])
    np.savetxt(folder / "boundary.csv", table[:, cols], delimiter=",")
    return folder


def problem(folder, conditions, pieces=None, **extra):
    spec = {"interior": str(folder / "interior.txt"), "boundary": str(folder / "boundary.csv")}
    if pieces is not None:
        spec["pieces"] = pieces
    return build_pde({"name": "cloud", "axes": ["x", "y"], "geometry": {"points": spec},
                      "residual": "lap(u) + 2*pi**2*sin(pi*x)*sin(pi*y)",
                      "exact": "sin(pi*x)*sin(pi*y)", "conditions": conditions, **extra})


def test_a_domain_from_files_draws_from_its_points_and_holds_its_conditions(tmp_path):
    folder = write_square_with_hole(tmp_path)
    dudn = "-(pi*cos(pi*x)*sin(pi*y)*(x - 0.5) + pi*sin(pi*x)*cos(pi*y)*(y - 0.5))/0.2"
    pde = problem(folder, {"outer": "0", "hole": {"neumann": {"u": dudn}}},
                  pieces={1: "outer", 2: "hole"})
    region = pde.region
    assert region.piece_names() == ("outer", "hole")
    assert [p.measure for p in region.pieces] == [200.0, 40.0]
    batch = Sampler("sobol", 500, 0, 120, region, F64, torch.Generator().manual_seed(0)).sample()
    assert batch.interior.shape == (500, 2) and [b.shape[0] for b in batch.boundary] == [99, 21]
    table = torch.as_tensor(np.loadtxt(folder / "interior.txt", comments="%"), dtype=F64)
    assert (batch.interior[:, None, :] == table[None]).all(-1).any(1).all()  # file points
    terms = loss_terms(Exact(pde), pde, batch)
    assert float(terms["bc"].detach()) < 1e-26 and float(terms["res"].detach()) < 1e-20
    # The normals are read: flip their sign in the condition and the misfit appears.
    wrong = problem(folder, {"outer": "0", "hole": {"neumann": {"u": f"-({dudn})"}}},
                    pieces={1: "outer", 2: "hole"})
    assert float(loss_terms(Exact(wrong), wrong, batch)["bc"].detach()) > 1e-2
    # Inside test of the grid: the hole's center and a point beyond the square are outside.
    pts = torch.tensor([[0.5, 0.5], [0.1, 0.1], [0.9, 0.3], [1.2, 0.5]], dtype=F64)
    assert region.inside(pts).tolist() == [False, True, True, False]


def test_files_without_ids_or_normals(tmp_path):
    folder = write_square_with_hole(tmp_path, normals=False, ids=False)
    pde = problem(folder, {"boundary": "sin(pi*x)*sin(pi*y)"})
    assert pde.region.piece_names() == ("boundary",)
    with pytest.raises(ValueError, match=r"pde.conditions.boundary: a Neumann or Robin condition "
                                         r"needs the outward normals"):
        problem(folder, {"boundary": {"neumann": {"u": "0"}}})


@pytest.mark.parametrize("change, match", [
    (lambda f: (f / "boundary.csv").write_text("0,0,1,0,1,7\n"),
     r"pde.geometry.points.boundary: 6 column\(s\); give 2 \(the points\)"),
    (lambda f: (f / "interior.txt").write_text("0 0 0\n1 1 1\n"),
     r"pde.geometry.points.interior: 3 column\(s\); the space axes x, y need 2"),
    (lambda f: (f / "boundary.csv").write_text("0,0,2,0,1\n"),
     r"pde.geometry.points.boundary: the normal in row 0 has length 2"),
    (lambda f: (f / "interior.txt").unlink(), r"pde.geometry.points.interior=.*: no such file"),
    (lambda f: (f / "interior.txt").write_text("0 x\n"), r"not a table of numbers"),
])
def test_bad_point_files_are_refused_in_one_line(tmp_path, change, match):
    folder = write_square_with_hole(tmp_path)
    change(folder)
    with pytest.raises(GeometryError, match=match) as info:
        problem(folder, {"piece1": "0", "piece2": "0"})
    assert "\n" not in str(info.value)


def test_piece_names_must_cover_the_ids(tmp_path):
    folder = write_square_with_hole(tmp_path)
    with pytest.raises(GeometryError, match=r"pde.geometry.points.pieces: no name for the piece "
                                            r"id 2"):
        problem(folder, {"outer": "0"}, pieces={1: "outer"})
    pde = problem(folder, {"piece1": "0", "piece2": "0"})
    assert pde.region.piece_names() == ("piece1", "piece2")


def test_integrals_and_distance_functions_are_refused_on_point_files(tmp_path):
    from pinn.nn.distance import build_distance_constraint

    folder = write_square_with_hole(tmp_path)
    with pytest.raises(ValueError, match=r"integrals need pieces of shapes"):
        problem(folder, {"piece1": "0", "piece2": "0"},
                quantities={"F": {"integral": "u", "over": "piece2"}})
    pde = problem(folder, {"piece1": "0", "piece2": "0"})
    with pytest.raises(ValueError, match=r"distance functions need shapes"):
        build_distance_constraint(pde, False)


def test_a_domain_from_files_trains_and_is_evaluated_inside_only(tmp_path):
    from omegaconf import OmegaConf

    from pinn.paths import RunPaths
    from pinn.train import build_trainer
    from tests.conftest import compose_cfg

    folder = write_square_with_hole(tmp_path)
    cfg = compose_cfg(["pde=poisson_holes", "trainer.steps=20", "trainer.qn_steps=10",
                       "model.depth=2", "model.width=8", "sampler.n_interior=200",
                       "sampler.n_boundary=60", "trainer.progress=false",
                       "log.tensorboard=false", "derivatives.compile=false"])
    OmegaConf.set_struct(cfg, False)
    cfg.pde.geometry = {"points": {"interior": str(folder / "interior.txt"),
                                   "boundary": str(folder / "boundary.csv"),
                                   "pieces": {1: "outer", 2: "hole"}}}
    cfg.pde.conditions = {"outer": "0", "hole": "sin(pi*x)*sin(pi*y)"}
    cfg.pde.eval_points = {"x": 21, "y": 21}
    m = build_trainer(cfg, RunPaths(tmp_path / "run")).fit()
    assert m["status"] == "completed" and np.isfinite(m["error/l2_rel/u"])
    from pinn.evaluation import make_eval_grid
    pde = build_pde(cfg.pde)
    grid = make_eval_grid(pde, cfg.pde)
    assert not grid.mask[10, 10] and grid.mask[2, 2]  # (0.5, 0.5) in the hole; (0.1, 0.1) not
