"""The problem library: every YAML problem composes, trains, and its residual vanishes on its
exact or reference solution; a problem written only in YAML trains and evaluates via the CLI."""
import json

import numpy as np
import pytest
import torch

from pinn.config import CONFIG_DIR
from pinn.derivatives import compute_derivatives
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.train import build_trainer
from tests.conftest import REPO, compose_cfg, run_cli

F64 = torch.float64
LIBRARY = sorted(p.stem for p in (CONFIG_DIR / "pde").glob("*.yaml"))
# Problems in (x, t); those in other axes are checked in tests/test_problems_nd.py.
CLOSED_FORM = [n for n in LIBRARY if (lambda p: p.has_exact and p.legacy)(
    build_pde(compose_cfg([f"pde={n}"]).pde))]


def test_library_has_the_documented_problems():
    assert {"heat", "wave", "advection", "burgers", "allen_cahn", "klein_gordon", "nls"} <= set(LIBRARY)
    assert set(CLOSED_FORM) >= {"heat", "wave", "advection", "klein_gordon"}


@pytest.mark.parametrize("name", LIBRARY)
def test_every_problem_trains_a_few_steps(name, tmp_path):
    cfg = compose_cfg([f"pde={name}", "trainer.steps=3", "trainer.qn_steps=2",
                       "trainer.progress=false", "sampler.n_interior=64", "sampler.n_initial=16",
                       "sampler.n_boundary=16", "model.depth=2", "model.width=8",
                       "pde.eval_nx=16", "pde.eval_nt=8", "log.tensorboard=false"]
                      # the chaotic case's reference costs 15 s to t = 1 (extended precision)
                      + (["pde.t_max=0.05"] if name == "kuramoto_sivashinsky" else []))
    pde = build_pde(cfg.pde)
    if not pde.legacy:
        cfg.pde.eval_points = {a: 6 for a in pde.axes.names}
    metrics = build_trainer(cfg, RunPaths(tmp_path)).fit()
    assert metrics["status"] == "completed"
    terms = ({f"res_{e}" for e in pde.equations} if pde.equations else {"res"}) | {"bc"}
    terms |= {"ic"} if pde.axes.time else set()
    assert {k for k in metrics if k.startswith("loss/") and k != "loss/total"} == {
        f"loss/{k}" for k in terms}
    assert all(np.isfinite(metrics[f"loss/{k}"]) for k in terms)
    compared = pde.reference_data.outputs if pde.reference_data is not None else (
        pde.outputs if pde.has_exact or pde.reference_name else ())
    for o in compared:
        assert f"error/l2_rel/{o}" in metrics
    for q in pde.reference_quantities:  # a problem compared by its quantities (the cylinder)
        assert np.isfinite(metrics[f"error/rel/{q}"]) and f"quantity/{q}" in metrics
    assert compared or pde.reference_quantities


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_residual_and_conditions_vanish_on_the_closed_form(name):
    check_closed_form(build_pde(compose_cfg([f"pde={name}"]).pde))


EXAMPLES = sorted((REPO / "examples" / "pde").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_problems_satisfy_their_own_equations(path):
    """The problems in examples/pde (written as a user would, trained with --config-dir)."""
    from omegaconf import OmegaConf

    from pinn.config import PDEConfig

    check_closed_form(build_pde(OmegaConf.merge(OmegaConf.structured(PDEConfig),
                                                OmegaConf.load(path))))


def check_closed_form(pde):
    """Residual, initial and boundary conditions vanish on the problem's closed form."""
    g = torch.Generator().manual_seed(0)
    u = torch.rand(400, 2, generator=g, dtype=F64)
    x = pde.x_min + (pde.x_max - pde.x_min) * u[:, :1]
    t = pde.t_min + (pde.t_max - pde.t_min) * u[:, 1:]
    exact = lambda xt: pde.exact(xt[:, :1], xt[:, 1:])  # noqa: E731
    d = compute_derivatives(exact, x, t, {"U", "Ux", "Ut", "Uxx", "Utt"}, create_graph=False)
    scale = max(d[k].abs().max().item() for k in pde.derivatives)
    assert pde.residual(x, t, d).abs().max().item() <= 1e-12 * scale
    t0 = torch.full_like(x, pde.t_min)
    assert torch.allclose(pde.initial(x), pde.exact(x, t0), atol=1e-13)
    if pde.initial_velocity_exprs:
        d0 = compute_derivatives(exact, x, t0, {"Ut"}, create_graph=False)
        assert torch.allclose(pde.initial_velocity(x), d0["Ut"], atol=1e-12)
    for side, xb in (("left", pde.x_min), ("right", pde.x_max)):
        xs = torch.full_like(t, xb)
        if pde.boundary_kind == "dirichlet":
            assert torch.allclose(pde.boundary(side, t), pde.exact(xs, t), atol=1e-12)
    if pde.boundary_kind == "periodic":
        a = pde.exact(torch.full_like(t, pde.x_min), t)
        b = pde.exact(torch.full_like(t, pde.x_max), t)
        assert torch.allclose(a, b, atol=1e-12)


def test_a_wrong_residual_is_not_zero_on_the_closed_form():
    cfg = compose_cfg(["pde=wave", "pde.residual=u_tt - 3.9*u_xx"])
    pde = build_pde(cfg.pde)
    x = torch.linspace(0.1, 0.9, 50, dtype=F64)[:, None]
    t = torch.full_like(x, 0.3)
    d = compute_derivatives(lambda xt: pde.exact(xt[:, :1], xt[:, 1:]), x, t, create_graph=False)
    assert pde.residual(x, t, d).abs().max() > 1e-2


def test_only_the_named_derivatives_are_computed():
    assert build_pde(compose_cfg(["pde=heat"]).pde).derivatives == {"U", "Ut", "Uxx"}
    assert build_pde(compose_cfg(["pde=advection"]).pde).derivatives == {"U", "Ut", "Ux"}
    nls = build_pde(compose_cfg(["pde=nls"]).pde)
    assert nls.derivatives == {"U", "Ut", "Uxx"} and nls.outputs == ("u", "v")


def test_residual_override_from_the_command_line_changes_the_problem():
    pde = build_pde(compose_cfg(["pde=heat", "pde.residual=u_t - 0.05*u_xx"]).pde)
    d = {"U": torch.zeros(1, 1), "Ut": torch.ones(1, 1), "Uxx": torch.full((1, 1), 2.0)}
    assert pde.residual(torch.zeros(1, 1), torch.zeros(1, 1), d).item() == pytest.approx(0.9)


def test_bad_expressions_fail_at_start_up_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    p = run_cli(["pde=heat", "pde.residual=u_t - __import__", f"hydra.run.dir={run_dir}"],
                cwd=tmp_path)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "pde.residual" in lines[0] and "__import__" in lines[0]
    assert not run_dir.exists()
    p = run_cli(["pde=heat", "pde.initial=u_x", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode != 0 and "pde.initial" in p.stderr and "u_x" in p.stderr


def test_yaml_only_problem_trains_and_evaluates_through_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    p = run_cli(["--config-dir", str(REPO / "tests" / "data"), "pde=slow_heat", "precision=float64",
                 "trainer.steps=200", "trainer.qn_steps=20", "trainer.progress=false",
                 "sampler.n_interior=256", "sampler.n_initial=64", "sampler.n_boundary=64",
                 "model.depth=2", "model.width=16", "log.figures=false",
                 f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["reference"] == "closed form"
    assert metrics["error/l2_rel/u"] < 0.2  # it learned something in 220 steps
    p = run_cli([f"run_dir={run_dir}"], cwd=tmp_path, module="pinn.evaluate")
    assert p.returncode == 0, p.stderr[-3000:]
    ev = json.loads((run_dir / "evaluation.json").read_text())
    assert ev["error/l2_rel/u"] == pytest.approx(metrics["error/l2_rel/u"], rel=1e-12)
    # Independent check against the closed form, computed here.
    import pinn

    model, _ = pinn.load_run(run_dir)
    X, T = np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 1, 21))
    xt = torch.tensor(np.stack([X.ravel(), T.ravel()], 1))
    with torch.no_grad():
        pred = model(xt)[:, 0].numpy().reshape(X.shape)
    exact = np.sin(np.pi * X) * np.exp(-0.05 * np.pi**2 * T)
    assert ev["error/l2_rel/u"] == pytest.approx(
        np.linalg.norm(pred - exact) / np.linalg.norm(exact), rel=1e-10)
    for f in ("figures/u_fields.png", "figures/u_slices.png"):
        assert (run_dir / f).stat().st_size > 10_000
    assert ev["residual/0/rms"] > 0


def test_problem_without_reference_trains_and_says_so(tmp_path):
    cfg = compose_cfg(["pde=heat", "pde.exact=null", "trainer.steps=2", "trainer.qn_steps=0",
                       "trainer.progress=false", "sampler.n_interior=32", "pde.eval_nx=8",
                       "pde.eval_nt=4", "log.tensorboard=false"])
    metrics = build_trainer(cfg, RunPaths(tmp_path)).fit()
    assert metrics["reference"] == "none"
    assert not any(k.startswith("error/") for k in metrics)


def _spectral_fields(pde, n_x, t):
    """Reference on a periodic grid, with u_x, u_xx by FFT and u_t by 4th-order differences."""
    L = pde.x_max - pde.x_min
    x = pde.x_min + L * np.arange(n_x) / n_x
    h = t[1] - t[0]
    U = pde.reference(x, t)  # (Nt, Nx, n_out)
    k = 2 * np.pi * np.fft.fftfreq(n_x, d=L / n_x)
    Uh = np.fft.fft(U, axis=1)
    ux = np.fft.ifft(1j * k[None, :, None] * Uh, axis=1).real
    uxx = np.fft.ifft(-(k**2)[None, :, None] * Uh, axis=1).real
    ut = (-U[4:] + 8 * U[3:-1] - 8 * U[1:-3] + U[:-4]) / (12 * h)
    sl = slice(2, -2)
    X, T = np.meshgrid(x, t[sl])
    as_t = lambda a: torch.tensor(a.reshape(-1, a.shape[-1]))  # noqa: E731
    d = {"U": as_t(U[sl]), "Ux": as_t(ux[sl]), "Uxx": as_t(uxx[sl]), "Ut": as_t(ut)}
    return as_t(X[..., None]), as_t(T[..., None]), d


# NLS: 2 sech x is not smooth across the periodic ends (slope -+0.027), so FFT derivatives there
# carry ~3e-4 relative error; a wrong equation is off by more than 1e-2.
@pytest.mark.parametrize("name, n_x, dt, tol", [("allen_cahn", 512, 1e-3, 1e-5),
                                                 ("nls", 256, 2.5e-4, 1e-3)])
def test_spectral_reference_satisfies_the_yaml_residual(name, n_x, dt, tol):
    """The residual written in configs/pde/<name>.yaml vanishes on the solver's solution
    (derivatives by FFT in x and finite differences in t, early times where both are accurate)."""
    pde = build_pde(compose_cfg([f"pde={name}"]).pde)
    t = np.arange(0, 41) * dt
    x, tt, d = _spectral_fields(pde, n_x, t)
    r = pde.residual(x, tt, d).numpy()
    scale = np.abs(d["Ut"].numpy()).max()
    assert np.abs(r).max() < tol * scale
    # A residual with the wrong sign of the nonlinearity is far from zero.
    bad = build_pde(compose_cfg([f"pde={name}", "pde.residual=" + (
        "u_t - d*u_xx - gamma*u**3 + gamma*u" if name == "allen_cahn" else
        '["u_t + 0.5*v_xx - (u**2 + v**2)*v", "v_t - 0.5*u_xx + (u**2 + v**2)*u"]')]).pde)
    assert np.abs(bad.residual(x, tt, d).numpy()).max() > 1e-2 * scale


@pytest.mark.parametrize("kind", ["dirichlet", "neumann", "periodic"])
def test_boundary_misfit_vanishes_on_the_exact_solution(kind):
    from pinn.losses import _boundary_misfits

    overrides = {
        "dirichlet": ["pde=heat"],
        "periodic": ["pde=advection"],
        # u = cos(pi x) exp(-kappa pi^2 t) on [0, 1]: u_x = 0 at both ends.
        "neumann": ["pde=heat", "pde.x_min=0.0", 'pde.initial="cos(pi*x)"',
                    'pde.exact="cos(pi*x)*exp(-kappa*pi**2*t)"', "pde.boundary.kind=neumann"],
    }[kind]
    pde = build_pde(compose_cfg(overrides).pde)
    t_half = torch.linspace(pde.t_min, pde.t_max, 9, dtype=F64)[:, None]
    t = torch.cat([t_half, t_half])
    x = torch.cat([torch.full_like(t_half, pde.x_min), torch.full_like(t_half, pde.x_max)])
    faces = (torch.cat([x, t], dim=1),)
    exact = lambda xt: pde.exact(xt[:, :1], xt[:, 1:])  # noqa: E731
    (misfit,) = _boundary_misfits(exact, pde, faces)
    assert misfit.abs().max() < 1e-12
    shifted = lambda xt: exact(xt) + 0.1 * xt[:, :1] ** 2  # noqa: E731
    (misfit,) = _boundary_misfits(shifted, pde, faces)
    assert misfit.abs().max() > 1e-2


def test_derived_quantities_are_reported_with_their_own_errors():
    # NLS reports |h| = sqrt(u^2 + v^2) besides u and v; a made-up reference on a small grid.
    from pinn.evaluation import EvalGrid, grid_errors

    pde = build_pde(compose_cfg(["pde=nls"]).pde)
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 5, 2))
    pred = ref + 0.01 * rng.normal(size=ref.shape)
    grid = EvalGrid(np.linspace(-5, 5, 5), np.linspace(0, 1, 4), ref)
    errs = grid_errors(pred, grid, pde)
    a, b = np.hypot(pred[..., 0], pred[..., 1]), np.hypot(ref[..., 0], ref[..., 1])
    assert errs["l2_rel/h_abs"] == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(b),
                                                 rel=1e-14)
    assert errs["max_abs/h_abs"] == pytest.approx(np.abs(a - b).max(), rel=1e-14)
    assert {"l2_rel/u", "l2_rel/v"} <= set(errs)


def test_a_derived_quantity_with_an_unknown_name_fails_in_one_line(tmp_path):
    p = run_cli(["pde=nls", "+pde.derived.bad=w**2", f"hydra.run.dir={tmp_path / 'r'}"],
                cwd=tmp_path)
    assert p.returncode != 0 and "pde.derived.bad: unknown name 'w'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.parametrize("name, dt, tol", [("kdv", 1e-3, 1e-6),
                                           ("kuramoto_sivashinsky", 1e-3, 1e-6)])
def test_higher_order_problems_match_their_solvers(name, dt, tol):
    """KdV (u_xxx) and Kuramoto-Sivashinsky (u_xxxx): the residual in the YAML vanishes on the
    solver's solution, every x-derivative by FFT, u_t by 4th-order differences; the same
    residual with the dispersive or fourth-order term's sign flipped does not."""
    pde = build_pde(compose_cfg([f"pde={name}"]).pde)
    n_x = 128
    L = pde.x_max - pde.x_min
    x = pde.x_min + L * np.arange(n_x) / n_x
    t = np.arange(0, 21) * dt
    U = pde.reference(x, t)[..., 0]  # (Nt, Nx)
    k = 2 * np.pi * np.fft.fftfreq(n_x, d=L / n_x)
    Uh = np.fft.fft(U, axis=1)
    sl = slice(2, -2)
    X, T = np.meshgrid(x, t[sl])
    points = torch.tensor(np.stack([X.ravel(), T.ravel()], axis=1))
    fields = {}
    for d in pde.wanted:
        nx, nt = d.alpha
        if nt:
            f = (-U[4:] + 8 * U[3:-1] - 8 * U[1:-3] + U[:-4]) / (12 * dt)
        else:
            f = np.fft.ifft((1j * k[None, :]) ** nx * Uh, axis=1).real[sl]
        fields[d] = torch.tensor(f.reshape(-1, 1))
    r = pde.residual_at(points, fields).numpy()
    scale = np.abs(fields[[d for d in pde.wanted if d.alpha == (0, 1)][0]].numpy()).max()
    assert np.abs(r).max() < tol * scale
    flipped = {"kdv": "u_t + lambda1*u*u_x - lambda2*u_xxx",
               "kuramoto_sivashinsky": "u_t + alpha*u*u_x + beta*u_xx - gamma*u_xxxx"}[name]
    bad = build_pde(compose_cfg([f"pde={name}", f"pde.residual={flipped}"]).pde)
    assert np.abs(bad.residual_at(points, fields).numpy()).max() > 1e-2 * scale
