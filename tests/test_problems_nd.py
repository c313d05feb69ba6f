"""Problems in 1-3 space dimensions, steady or in time: the shipped ones satisfy their own
equations and conditions (their closed forms put through the loss, derivatives by autograd),
the loss terms of systems, the evaluation grid's layout, and every bad input in one line."""
import math

import numpy as np
import pytest
import torch

from pinn.coords import CoordinateError, Derivative
from pinn.evaluation import make_eval_grid, predict_grid
from pinn.expressions import ExpressionError
from pinn.losses import _boundary_misfits, _initial_misfit, loss_terms
from pinn.pdes import build_pde
from pinn.sampling import Sampler
from tests.conftest import compose_cfg

F64 = torch.float64
ND = ["poisson2d", "poisson3d", "helmholtz2d", "heat2d", "kovasznay"]


class Exact(torch.nn.Module):
    """The problem's closed form as a network: points (N, d) -> (N, n_out)."""

    def __init__(self, pde, bump=0.0):
        super().__init__()
        self.pde, self.bump = pde, bump
        self.anchor = torch.nn.Parameter(torch.zeros((), dtype=F64))  # dtype and device

    def forward(self, p):
        u = self.pde.exact_at(p)
        # A perturbation that vanishes nowhere on the boundary and changes every derivative.
        return u + self.bump * torch.exp(p.sum(dim=1, keepdim=True))


def batch_of(pde, n=200, seed=0):
    return Sampler("sobol", n, 50, 120, pde.domain, F64,
                   torch.Generator().manual_seed(seed)).sample()


@pytest.mark.parametrize("name", ND)
def test_the_shipped_closed_forms_satisfy_their_problems(name):
    pde = build_pde(compose_cfg([f"pde={name}"]).pde)
    b = batch_of(pde)
    terms = loss_terms(Exact(pde), pde, b)
    assert set(terms) >= ({"bc"} | ({"ic"} if pde.axes.time else set()))
    scale = max(1.0, float(pde.exact_at(b.interior).abs().max()))
    for k, v in terms.items():
        assert float(v.detach()) < 1e-16 * scale**2, (k, float(v.detach()))
    bad = loss_terms(Exact(pde, bump=1e-2), pde, b)
    assert all(float(bad[k].detach()) > 1e-9 for k in terms), bad


def test_a_system_has_a_loss_term_per_named_equation():
    pde = build_pde(compose_cfg(["pde=kovasznay"]).pde)
    assert pde.equations == ["momentum_x", "momentum_y", "continuity"]
    terms = loss_terms(Exact(pde, bump=1e-2), pde, batch_of(pde))
    assert set(terms) == {"res_momentum_x", "res_momentum_y", "res_continuity", "bc"}
    # u, v conditioned on every side, p on the outlet only: the misfits have 2 * m values on
    # each face normal to y and (2 + 3) m / 2 ... counted below from the pairs.
    b = batch_of(pde)
    (fx, fy) = _boundary_misfits(Exact(pde, 1e-2), pde, b.faces)
    mx, my = b.faces[0].shape[0] // 2, b.faces[1].shape[0] // 2
    assert fx.numel() == mx * 2 + mx * 3 and fy.numel() == 2 * my * 2


def test_loss_weights_res_weighs_the_equations_given_none(tmp_path):
    from pinn.paths import RunPaths
    from pinn.train import build_trainer

    cfg = compose_cfg(["pde=kovasznay", "model.depth=1", "model.width=4", "loss.weights.res=3",
                       "+loss.weights.res_continuity=2", "sampler.n_interior=16",
                       "sampler.n_boundary=16", "log.figures=false"])
    trainer = build_trainer(cfg, RunPaths(tmp_path), device=torch.device("cpu"))
    assert trainer.weights == {"bc": 1.0, "res_continuity": 2.0,
                               "res_momentum_x": 3.0, "res_momentum_y": 3.0}


def test_neumann_compares_the_outward_derivative():
    # u = x on [0, 1]^2: du/dn = -1 on the left, +1 on the right; 0 on bottom and top.
    pde = build_pde({"name": "n", "axes": ["x", "y"], "domain": {"x": [0, 1], "y": [0, 1]},
                     "residual": "lap(u)", "exact": "x",
                     "conditions": {"left": {"neumann": {"u": "-1"}},
                                    "right": {"neumann": {"u": "1"}},
                                    "bottom": {"neumann": {"u": "0"}}, "top": "x"}})
    b = batch_of(pde)
    assert all(float(m.abs().max()) < 1e-14 for m in _boundary_misfits(Exact(pde), pde, b.faces))
    flipped = build_pde({**{"name": "n", "axes": ["x", "y"], "residual": "lap(u)",
                            "domain": {"x": [0, 1], "y": [0, 1]}},
                         "conditions": {"left": {"neumann": {"u": "1"}},
                                        "right": {"neumann": {"u": "1"}}, "bottom": "free",
                                        "top": "free"}})
    (fx,) = [m for m in _boundary_misfits(Exact(pde), flipped, b.faces)]
    assert float(fx.abs().max()) == pytest.approx(2.0)


def test_initial_velocity_in_two_space_dimensions():
    # u = sin(pi x) sin(pi y) cos(c pi t): the wave equation, u_t(t=0) = 0.
    pde = build_pde({"name": "w", "axes": ["x", "y", "t"], "outputs": ["u"],
                     "domain": {"x": [0, 1], "y": [0, 1], "t": [0, 1]}, "params": {"c": 1.5},
                     "residual": "u_tt - c**2*lap(u)", "initial": "sin(pi*x)*sin(pi*y)",
                     "initial_velocity": "0",
                     "exact": "sin(pi*x)*sin(pi*y)*cos(c*sqrt(2)*pi*t)",
                     "conditions": {"left": "0", "right": "0", "bottom": "0", "top": "0"}})
    b = batch_of(pde)
    assert float(_initial_misfit(Exact(pde), pde, b.initial).abs().max()) < 1e-14
    terms = loss_terms(Exact(pde), pde, b)
    assert float(terms["res"]) < 1e-24
    moving = Exact(pde, bump=1e-3)
    assert float(_initial_misfit(moving, pde, b.initial)[:, 1].abs().min()) > 1e-4


def test_written_the_new_way_a_one_dimensional_problem_gives_the_same_terms():
    old = build_pde(compose_cfg(["pde=heat"]).pde)
    new = build_pde({"name": "heat", "axes": ["x", "t"], "domain": {"x": [-1, 1], "t": [0, 1]},
                     "params": {"kappa": 0.1, "k": 2}, "residual": "u_t - kappa*u_xx",
                     "initial": "sin(k*pi*(x + 1)/2)",
                     "conditions": {"left": "0", "right": "0"}})
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 1)).double()
    b = batch_of(old)
    a, c = loss_terms(net, old, b), loss_terms(net, new, b)
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)


def test_periodic_axes_compare_values_and_slopes_on_opposite_faces():
    pde = build_pde({"name": "p", "axes": ["x", "y"], "periodic": ["x"],
                     "domain": {"x": [0, "2*pi"], "y": [0, 1]}, "residual": "lap(u)",
                     "exact": "sin(x)*exp(y)", "conditions": {"bottom": "sin(x)",
                                                              "top": "free"}})
    b = batch_of(pde)
    fx, fy = _boundary_misfits(Exact(pde), pde, b.faces)
    assert float(fx.abs().max()) < 1e-13 and float(fy.abs().max()) < 1e-14
    shifted = lambda p: Exact(pde)(p) + p[:, :1]  # noqa: E731  (u(2 pi) - u(0) = 2 pi)
    fx, _ = _boundary_misfits(shifted, pde, b.faces)
    assert float(fx.abs().max()) == pytest.approx(2 * math.pi)


@pytest.mark.parametrize("name, shape", [("poisson2d", (101, 101)), ("heat2d", (21, 51, 51)),
                                         ("poisson3d", (31, 31, 31))])
def test_the_error_grid_is_laid_out_with_the_axes_reversed(name, shape):
    pde = build_pde(compose_cfg([f"pde={name}"]).pde)
    grid = make_eval_grid(pde, compose_cfg([f"pde={name}"]).pde)
    assert grid.shape == shape and grid.reference.shape == (*shape, 1)
    pred = predict_grid(Exact(pde), grid)
    np.testing.assert_allclose(pred, grid.reference, rtol=0, atol=1e-15)
    mesh = grid.mesh()
    # Along the last array dimension the first axis (x) varies.
    assert mesh["x"][(0,) * (len(shape) - 1) + (1,)] == grid.axis("x")[1]


def test_derivative_kinds_reach_the_residual():
    # A residual with a mixed, a third and a fourth partial: u = x^3 y^2 + y^4 makes each
    # exact: u_xy = 6 x^2 y, u_xxx = 6 y^2, u_yyyy = 24.
    pde = build_pde({"name": "k", "axes": ["x", "y"], "domain": {"x": [0, 1], "y": [0, 1]},
                     "residual": ["u_xy - 6*x**2*y", "u_xxx - 6*y**2", "u_yyyy - 24"],
                     "exact": "x**3*y**2 + y**4",
                     "conditions": {"left": "free", "right": "free", "bottom": "free",
                                    "top": "free"}})
    assert Derivative(0, (1, 1)) in pde.wanted and Derivative(0, (0, 4)) in pde.wanted
    assert pde.derivatives is None  # no 1-D names: the autograd engine computes them
    terms = loss_terms(Exact(pde), pde, batch_of(pde))
    assert float(terms["res"]) < 1e-24 and "bc" not in terms


BASE = {"name": "b", "axes": ["x", "y"], "domain": {"x": [0, 1], "y": [0, 1]},
        "residual": "lap(u)", "conditions": {"left": "0", "right": "0", "bottom": "0",
                                             "top": "0"}}


@pytest.mark.parametrize("change, error, match", [
    ({"axes": ["x", "w"]}, CoordinateError, r"pde.axes: 'w' is not an axis: one of x, y, z, t"),
    ({"axes": ["x", "x"]}, CoordinateError, r"pde.axes: the axis x is given twice"),
    ({"residual": "u_xz"}, CoordinateError,
     r"pde.residual: u_xz: 'z' is not an axis of this problem \(its axes are x, y\)"),
    ({"residual": "u_t + lap(u)"}, CoordinateError,
     r"pde.residual: u_t: a time derivative in a steady problem"),
    ({"residual": "u_xxxxy"}, CoordinateError, r"order 5 is above the highest allowed, 4"),
    ({"residual": "lap(q)"}, ExpressionError, r"pde.residual: lap\(\) takes an output \(u\)"),
    ({"conditions": {"left": "0", "right": "0", "bottom": "0"}}, ValueError,
     r"pde.conditions: the face top has no condition; give one .* or write top: free"),
    ({"conditions": {"left": "0", "right": "0", "bottom": "0", "top": "0", "back": "0"}},
     CoordinateError, r"pde.conditions.back: no such face; the faces are left, right, bottom, "
                      r"top"),
    ({"conditions": {"left": "0", "right": "0", "bottom": "0", "top": "0",
                     "t_min": {"neumann": {"u": "0"}}}}, CoordinateError,
     r"pde.conditions.t_min: time has no faces"),
    ({"conditions": {"left": "0", "right": "0", "bottom": "0", "top": {"w": "0"}}},
     ValueError, r"pde.conditions.top.w: not an output; the outputs are u"),
    ({"conditions": {"left": "0", "right": "0", "bottom": "0", "top": {"robin": {"u": "0"}}}},
     ValueError, r"pde.conditions.top.robin: not an output"),
    ({"periodic": ["x"]}, ValueError, r"pde.conditions.left: the axis x is periodic"),
    ({"initial": "0"}, ValueError, r"pde.initial: a steady problem \(no t among pde.axes\)"),
    ({"x_min": 0.0}, ValueError, r"pde.x_min is for problems written the 1-D way"),
    ({"domain": {"x": [0, 1]}}, CoordinateError, r"pde.domain.y: give the interval"),
    ({"domain": {"x": [0, 1], "y": [0, 1], "z": [0, 1]}}, CoordinateError,
     r"pde.domain.z: not an axis of this problem"),
    ({"residual": {"1st": "lap(u)"}}, ValueError, r"pde.residual.1st: an equation's name"),
])
def test_bad_problems_are_refused_in_one_line(change, error, match):
    with pytest.raises(error, match=match) as info:
        build_pde({**BASE, **change})
    assert "\n" not in str(info.value)


def test_a_two_dimensional_problem_trains_and_evaluates_from_the_command_line(tmp_path):
    import json

    from tests.conftest import run_cli

    run = tmp_path / "run"
    p = run_cli(["pde=kovasznay", "trainer.steps=30", "trainer.qn_steps=10", "model.depth=2",
                 "model.width=12", "sampler.n_interior=128", "sampler.n_boundary=64",
                 "precision=float64", "pde.eval_points.x=21", "pde.eval_points.y=21",
                 "+loss.weights.res_continuity=2", "trainer.eval_every=20",
                 f"hydra.run.dir={run}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert {"error/l2_rel/u", "error/l2_rel/v", "error/l2_rel/p", "loss/res_momentum_x",
            "loss/res_continuity", "loss/bc"} <= set(m)
    e = run_cli([f"run_dir={run}", "tensorboard=false"], cwd=tmp_path, module="pinn.evaluate")
    assert e.returncode == 0, e.stderr[-3000:]
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["grid"] == {"x": 21, "y": 21}
    assert ev["error/l2_rel/u"] == pytest.approx(m["error/l2_rel/u"], rel=1e-12)
    assert (run / "figures" / "p_fields.png").exists()


@pytest.mark.parametrize("override, message", [
    ("pde.conditions.top=free", None),  # accepted: the face is declared free
    ("+pde.conditions.front=0", "pde.conditions.front: no such face"),
    ("loss.causal=true", "loss.causal=true weights the residual in time; poisson2d is in (x, y)"),
    ("+loss.weights.res_momentum=1", "loss.weights.res_momentum: not a term of poisson2d"),
    ("model.hard_initial=true", "model.hard_initial=true imposes the initial condition; "
                                "pde=poisson2d is steady"),
    ("model.hard_boundary=true", "model.hard_boundary=true imposes u = 0 on every face; face "
                                 "top of pde=poisson2d has no Dirichlet condition on u"),
    ("model.periodic=true", "model.periodic=true embeds the periodic axes; poisson2d has none"),
])
def test_bad_run_options_for_a_problem_stop_in_one_line(tmp_path, override, message):

    from pinn.nn import build_model
    from pinn.pdes.options import check_run_options

    cfg = compose_cfg(["pde=poisson2d", override])
    if message is None:
        pde = build_pde(cfg.pde)
        check_run_options(cfg, pde)
        assert build_model(cfg, pde).n_in == 2
        return
    with pytest.raises(ValueError, match=re_escape(message)) as info:
        pde = build_pde(cfg.pde)
        check_run_options(cfg, pde)
        build_model(cfg, pde)
    assert "\n" not in str(info.value)


def re_escape(text):
    import re

    return re.escape(text)


def test_a_bad_problem_exits_2_with_one_line_and_no_run_folder(tmp_path):
    from tests.conftest import run_cli

    p = run_cli(["pde=poisson2d", "~pde.conditions.top", f"hydra.run.dir={tmp_path / 'r'}"],
                cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: pde.conditions: the face top has no condition; give one (e.g. top: \"0\" for "
        "u = 0) or write top: free"], p.stderr
    assert not (tmp_path / "r").exists()


def test_errors_at_the_nodes_of_a_reference_file(tmp_path):
    from pinn.evaluation import node_errors

    pde = build_pde(compose_cfg(["pde=cavity"]).pde)
    assert pde.reference_kind == "file ghia_re100.txt"
    ref = pde.reference_data
    assert ref.points.shape == (34, 2) and ref.outputs == ("u", "v")
    # A "network" whose u is the table's u plus 0.01 where u is tabulated, and v = 0.
    u_rows = np.where(np.isnan(ref.values[:, :1]), 0.0, ref.values[:, :1] + 0.01)
    nodes = torch.tensor(ref.points)

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros((), dtype=F64))

        def forward(self, p):
            assert torch.equal(p, nodes)  # the nodes, in the file's order
            u = torch.tensor(u_rows)
            return torch.cat([u, torch.zeros_like(u), torch.zeros_like(u)], dim=1)

    errs = node_errors(Table(), pde)
    given_u = ref.values[~np.isnan(ref.values[:, 0]), 0]
    assert errs["l2_rel/u"] == pytest.approx(0.01 * math.sqrt(len(given_u))
                                             / np.linalg.norm(given_u), rel=1e-12)
    assert errs["l2_rel/v"] == pytest.approx(1.0) and errs["max_abs/u"] == pytest.approx(0.01)
    assert "l2_rel/p" not in errs and len(given_u) == 17


def test_a_reference_file_that_does_not_match_the_problem_is_refused(tmp_path):
    f = tmp_path / "ref.txt"
    f.write_text("% x y u\n0.5 0.5 1.0\n")
    with pytest.raises(ValueError, match=r"pde.reference_file=.*ref.txt: no column v \(it has "
                                         r"x, y, u\); expected x, y, u, v"):
        build_pde({**BASE, "outputs": ["u", "v"], "conditions": {"left": "0", "right": "0",
                                                                 "bottom": "0", "top": "0"},
                   "residual": ["lap(u)", "lap(v)"], "reference_file": str(f)})
    f.write_text("0.5 1.5 1.0\n")
    with pytest.raises(ValueError, match=r"outside"):
        build_pde({**BASE, "reference_file": str(f)})
    with pytest.raises(ValueError, match=r"pde.reference_outputs=\['w'\] is not allowed"):
        build_pde({**BASE, "reference_file": str(f), "reference_outputs": ["w"]})
    with pytest.raises(ValueError, match=r"pde.reference_file=.*missing.txt: no such file"):
        build_pde({**BASE, "reference_file": str(tmp_path / "missing.txt")})


@pytest.mark.parametrize("name, overrides", [
    ("poisson3d", []), ("heat2d", []), ("kovasznay", []),
    # mixed, third and fourth partials: the Taylor engine's jets
    ("poisson2d", ["pde.residual=\"u_xy + lap(u)\""]), ("kdv", []),
    ("kuramoto_sivashinsky", [])])
def test_the_taylor_engine_gives_the_loss_of_autograd(name, overrides):
    from pinn.fields import taylor_reason
    from pinn.nn import build_model

    cfg = compose_cfg([f"pde={name}", "model.depth=2", "model.width=12", "precision=float64",
                       "model.fourier_features=4", *overrides])
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde)
    assert taylor_reason(model, pde.wanted) is None
    b = batch_of(pde, n=64)
    ref = loss_terms(model, pde, b, engine="autograd")
    got = loss_terms(model, pde, b, engine="taylor")
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-12, atol=1e-15)
    params = list(model.parameters())
    g_ref = torch.autograd.grad(sum(ref.values()), params)
    g_got = torch.autograd.grad(sum(got.values()), params)
    for a, c in zip(g_got, g_ref):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-13)


def test_mixed_partials_of_order_3_go_to_autograd_with_the_reason_recorded(tmp_path):
    from pinn.paths import RunPaths
    from pinn.train import build_trainer

    cfg = compose_cfg(["pde=poisson2d", "pde.residual=\"u_xxy + lap(u)\"", "model.depth=1",
                       "model.width=4", "sampler.n_interior=16", "sampler.n_boundary=16",
                       "trainer.steps=1", "trainer.qn_steps=0", "log.figures=false",
                       "pde.eval_points.x=5", "pde.eval_points.y=5"])
    trainer = build_trainer(cfg, RunPaths(tmp_path), device=torch.device("cpu"))
    trainer.fit()
    events = [e["event"] for e in trainer.events]
    assert any(e.startswith("derivatives engine: autograd (taylor: ")
               and "mixed partial of order 3" in e for e in events), events


@pytest.mark.parametrize("name", ["kdv", "kuramoto_sivashinsky"])
def test_third_and_fourth_order_problems_train_with_the_taylor_engine_as_with_autograd(
        tmp_path, name):
    """derivatives.engine=auto takes the Taylor engine for u_xxx and u_xxxx; its Adam steps
    give autograd's loss history."""
    from pinn.paths import RunPaths
    from pinn.train import build_trainer

    history = {}
    for engine in ("autograd", "auto"):
        cfg = compose_cfg([f"pde={name}", "model.depth=2", "model.width=8", "precision=float64",
                           "sampler.n_interior=64", "sampler.n_initial=16",
                           "sampler.n_boundary=16", "trainer.steps=3", "trainer.qn_steps=0",
                           "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false",
                           "pde.t_max=0.05",  # a short reference solve
                           f"derivatives.engine={engine}"])
        trainer = build_trainer(cfg, RunPaths(tmp_path / engine), device=torch.device("cpu"))
        history[engine] = [float(trainer.adam_step()["total"]) for _ in range(3)]
        assert trainer.events[0]["event"] == "derivatives engine: " + (
            "autograd" if engine == "autograd" else "taylor")
    for a, b in zip(history["auto"], history["autograd"]):
        assert a == pytest.approx(b, rel=1e-12)


def test_causal_weighting_trains_a_system_with_named_equations(tmp_path):
    from pinn.paths import RunPaths
    from pinn.train import build_trainer

    cfg = compose_cfg(["pde=taylor_green", "loss.causal=true", "trainer.steps=3",
                       "trainer.qn_steps=2", "trainer.progress=false", "sampler.n_interior=64",
                       "sampler.n_initial=16", "sampler.n_boundary=16", "model.depth=2",
                       "model.width=8", "log.tensorboard=false"])
    cfg.pde.eval_points = {"x": 5, "y": 5, "t": 3}
    metrics = build_trainer(cfg, RunPaths(tmp_path)).fit()
    assert metrics["status"] == "completed"
    assert {"loss/res_momentum_x", "loss/res_momentum_y", "loss/res_continuity"} <= set(metrics)
