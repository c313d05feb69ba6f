"""Levenberg-Marquardt (optim.qn=lm): the residual vector, its normal equations, the damped
step, the damping rule, the trainer's stage (resume bitwise) and the refusals."""
import math

import pytest
import torch

from pinn.losses import loss_terms, weighted_total
from pinn.nn import build_model
from pinn.optim.gauss_newton import (LevenbergMarquardt, damped_step, gain_ratio,
                                     lm_config_error, next_damping)
from pinn.optim.stages import check_quasi_newton
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.residual_vector import blocks, normal_equations, residual_vector, trainable
from pinn.train import build_trainer
from tests.conftest import compose_cfg, run_cli
from tests.test_faults import final_parameters, stop_and_resume
from tests.test_problems_nd import batch_of

WEIGHTS = {"res": 1.0, "ic": 10.0, "bc": 2.0, "data": 3.0}


def _problem(name, extra=()):
    cfg = compose_cfg([f"pde={name}", "model.depth=2", "model.width=6", "precision=float64",
                       *extra])
    pde = build_pde(cfg.pde)
    return pde, build_model(cfg, pde), batch_of(pde, n=30)


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


# burgers: Dirichlet faces; allen_cahn: periodic pairs; kovasznay: a system with named
# equations; poisson_holes: a region's pieces with Dirichlet and Neumann conditions; kdv: third
# partials; wave: an initial velocity; heat2d with a hard initial condition (no ic term).
@pytest.mark.parametrize("name, extra", [
    ("burgers", []), ("allen_cahn", []), ("kovasznay", []), ("poisson_holes", []),
    ("kdv", []), ("wave", []), ("heat2d", ["model.hard_initial=true"])])
def test_the_residual_vector_squares_to_the_loss_and_its_jacobian_gives_the_gradient(name,
                                                                                   extra):
    pde, model, batch = _problem(name, extra)
    weights = {**WEIGHTS, **{f"res_{e}": 1.5 + i for i, e in enumerate(pde.equations or [])}}
    loss = weighted_total(loss_terms(model, pde, batch, engine="autograd"), weights)
    rows = blocks(model, pde, batch, weights)
    R = residual_vector(model, rows)
    A, g, RR = normal_equations(model, rows)
    torch.testing.assert_close(R @ R, loss.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(RR, loss.detach(), rtol=1e-13, atol=0)
    grad = _flat(torch.autograd.grad(loss, list(trainable(model).values())))
    torch.testing.assert_close(2 * g, grad, rtol=1e-11, atol=1e-13)  # d||R||^2 = 2 J'R


def test_the_normal_matrix_is_j_transpose_j_by_finite_differences():
    """v'Av = |Jv|^2 with Jv from central differences of R along a random direction v; and
    chunking the rows changes nothing."""
    pde, model, batch = _problem("poisson_holes")
    rows = blocks(model, pde, batch, WEIGHTS)
    A, g, _ = normal_equations(model, rows)
    A_small, g_small, _ = normal_equations(model, rows, chunk_numbers=500)  # many chunks
    torch.testing.assert_close(A_small, A, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(g_small, g, rtol=1e-13, atol=1e-13)
    params = list(trainable(model).values())
    x0 = _flat([p.detach() for p in params])
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(x0.numel(), generator=gen, dtype=x0.dtype)
        eps = 1e-5
        R = []
        for sign in (1, -1):
            _set(params, x0 + sign * eps * v)
            R.append(residual_vector(model, rows))
        _set(params, x0)
        Jv = (R[0] - R[1]) / (2 * eps)
        assert abs(float(v @ A @ v) / float(Jv @ Jv) - 1) < 1e-7


def _set(params, x):
    with torch.no_grad():
        i = 0
        for p in params:
            p.copy_(x[i:i + p.numel()].view_as(p))
            i += p.numel()


def test_the_data_term_has_its_rows_too(tmp_path):
    from pinn.data import Observations

    pde, model, batch = _problem("heat")
    gen = torch.Generator().manual_seed(1)
    pts = torch.rand(20, 2, generator=gen, dtype=torch.float64) * 2 - torch.tensor([1.0, 0.0])
    w = torch.rand(20, 1, generator=gen, dtype=torch.float64) + 0.5
    obs = Observations(points=pts, values=torch.randn(20, 1, generator=gen, dtype=torch.float64),
                       columns=(0,), names=("u",), weights=w / w.mean())
    loss = weighted_total(loss_terms(model, pde, batch, engine="autograd", data=obs), WEIGHTS)
    A, g, RR = normal_equations(model, blocks(model, pde, batch, WEIGHTS, data=obs))
    torch.testing.assert_close(RR, loss.detach(), rtol=1e-13, atol=0)
    grad = _flat(torch.autograd.grad(loss, list(trainable(model).values())))
    torch.testing.assert_close(2 * g, grad, rtol=1e-11, atol=1e-13)


def test_the_damped_step_solves_the_damped_normal_equations():
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(40, 9, generator=gen, dtype=torch.float64)
    R = torch.randn(40, generator=gen, dtype=torch.float64)
    A, g = J.T @ J, J.T @ R
    for mu in (1e-8, 1e-2, 1e3):
        h = damped_step(A, g, mu)
        dense = torch.linalg.solve(A + mu * torch.eye(9, dtype=A.dtype), -g)
        torch.testing.assert_close(h, dense, rtol=1e-10, atol=1e-14)
    # mu -> 0: the Gauss-Newton step, the least-squares solution of J h = -R
    lstsq = torch.linalg.lstsq(J, -R[:, None]).solution[:, 0]
    torch.testing.assert_close(damped_step(A, g, 1e-12), lstsq, rtol=1e-8, atol=1e-10)
    # not positive definite in floating point: None, and the rule raises the damping
    assert damped_step(-torch.eye(3, dtype=A.dtype), torch.ones(3, dtype=A.dtype), 0.5) is None


def test_gain_ratio_and_damping_follow_nielsens_rule():
    """On a linear least-squares problem the linear model is exact: rho = 1, and the damping
    falls by a third; a rise in the loss doubles it, then quadruples."""
    gen = torch.Generator().manual_seed(2)
    J = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    R = torch.randn(30, generator=gen, dtype=torch.float64)
    A, g = J.T @ J, J.T @ R
    mu = 0.3
    h = damped_step(A, g, mu)
    after = float((R + J @ h) @ (R + J @ h))
    assert gain_ratio(float(R @ R), after, h, g, mu) == pytest.approx(1.0, rel=1e-12)
    assert next_damping(mu, 8.0, 1.0) == (pytest.approx(mu / 3), 2.0)
    assert next_damping(mu, 2.0, 0.5) == (mu, 2.0)  # 1 - (2 rho - 1)^3 = 1
    assert next_damping(mu, 2.0, -1.0) == (2 * mu, 4.0)
    assert next_damping(2 * mu, 4.0, -math.inf) == (8 * mu, 8.0)
    assert gain_ratio(1.0, math.nan, h, g, mu) == -math.inf


def test_the_stage_minimizes_a_nonlinear_least_squares_problem():
    """Rosenbrock as residuals (10 (x2 - x1^2), 1 - x1): LM reaches the minimum (1, 1) from
    (-1.2, 1) in a few dozen steps, every accepted step lowering the loss."""
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)

    def residual():
        return torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])

    def system():
        r = residual()
        J = torch.autograd.functional.jacobian(lambda y: torch.stack(
            [10 * (y[1] - y[0] ** 2), 1 - y[0]]), x.detach())
        return J.T @ J, J.T @ r.detach(), r.detach() @ r.detach()

    def loss():
        r = residual().detach()
        return {"total": float(r @ r)}

    lm = LevenbergMarquardt([x], tau=1e-3)
    values = [loss()["total"]]
    for _ in range(60):
        values.append(lm.step(system, loss)["total"])
        if values[-1] < 1e-28:
            break
    assert all(b < a for a, b in zip(values, values[1:]))
    torch.testing.assert_close(x.detach(), torch.ones(2, dtype=torch.float64), rtol=0,
                               atol=1e-12)


LM = ["pde=heat", "precision=float64", "model.depth=2", "model.width=8", "trainer.steps=6",
      "trainer.qn_steps=8", "trainer.checkpoint_every=3", "trainer.eval_every=100",
      "trainer.progress=false", "sampler.n_interior=64", "sampler.n_initial=16",
      "sampler.n_boundary=16", "sampler.resample_every=5", "sampler.adaptive=rad",
      "sampler.rad_oversample=3", "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false",
      "optim.qn=lm"]


@pytest.fixture(scope="module")
def uninterrupted_lm(tmp_path_factory):
    tr = build_trainer(compose_cfg(LM), RunPaths(tmp_path_factory.mktemp("lm")))
    metrics = tr.fit()
    assert metrics["status"] == "completed"
    assert metrics["qn_method"] == "lm" and metrics["qn_iterations"] == 8
    return final_parameters(tr), tr.events, tr.qn


def test_the_lm_stage_trains_and_lowers_the_loss(uninterrupted_lm):
    _, events, stage = uninterrupted_lm
    assert {"step": 6, "event": "quasi-Newton stage: lm"} in events
    assert stage.jacobians == 8 and stage.evaluations >= 9
    assert stage.last["rho"] > 0 and stage.mu > 0


@pytest.mark.parametrize("stop_at", [7, 10, 11])  # in the stage, at and after a RAD redraw
def test_resume_through_the_lm_stage_is_bitwise(stop_at, tmp_path, uninterrupted_lm):
    resumed = stop_and_resume(LM, tmp_path, stop_at)
    params, events, _ = uninterrupted_lm
    assert all(torch.equal(a, b) for a, b in zip(final_parameters(resumed), params))
    assert resumed.events == events


@pytest.mark.parametrize("extra, match", [
    (["model.norm=batch"], "optim.qn=lm with bn.mode=detached"),
    (["model.norm=batch", "bn.mode=batch"], "optim.qn=lm with bn.mode=batch"),
    (["loss.causal=true"], "optim.qn=lm with loss.causal=true"),
])
def test_what_lm_cannot_take_is_refused_in_one_line(extra, match):
    error = lm_config_error(compose_cfg(["optim.qn=lm", *extra]))
    assert error is not None and error.startswith(match) and "\n" not in error


def test_lm_takes_bn_frozen_at_the_end_of_adam():
    assert lm_config_error(compose_cfg(["optim.qn=lm", "model.norm=batch", "bn.freeze_at=1000",
                                        "trainer.steps=1000"])) is None
    assert lm_config_error(compose_cfg(["optim.qn=lm", "model.norm=batch",
                                        "bn.mode=frozen"])) is None


def test_a_network_too_large_for_lm_is_refused():
    cfg = compose_cfg(["optim.qn=lm", "optim.max_dense_params=100"])
    params = [torch.zeros(11, 10, dtype=torch.float64, requires_grad=True)]
    with pytest.raises(ValueError, match=r"optim.qn=lm: the network has 110 parameters"):
        check_quasi_newton(cfg.optim, params)


def test_lm_refusals_exit_2_from_the_command_line(tmp_path):
    p = run_cli(["optim.qn=lm", "model.norm=batch", "trainer.steps=2", "trainer.qn_steps=2"],
                tmp_path)
    assert p.returncode == 2
    assert "optim.qn=lm with bn.mode=detached" in p.stderr
