"""The reference solvers registered as ``kdv`` and ``kuramoto_sivashinsky``: what a problem
must state to use them, and what they return. No problem file uses them yet (the 1-D residuals
stop at second derivatives), so a stand-in carries what the checks read."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pinn.reference.kdv import kdv
from pinn.reference.kuramoto_sivashinsky import kuramoto_sivashinsky
from pinn.reference.solvers import SOLVERS, check_solver, solve_reference

BENCHMARKS = {
    "kdv": dict(params={"lambda1": 1.0, "lambda2": 0.0025}, x_min=-1.0, x_max=1.0,
                initial=lambda x: torch.cos(math.pi * x)),
    "kuramoto_sivashinsky": dict(
        params={"alpha": 100 / 16, "beta": 100 / 16**2, "gamma": 100 / 16**4},
        x_min=0.0, x_max=2 * math.pi, initial=lambda x: torch.cos(x) * (1 + torch.sin(x))),
}


def _problem(name, **changes):
    """A stand-in for :class:`pinn.pdes.problem.PDE` with the attributes the checks read."""
    spec = {**BENCHMARKS[name], **changes}
    return SimpleNamespace(reference_name=name, params=spec["params"], x_min=spec["x_min"],
                           x_max=spec["x_max"], t_min=0.5, n_out=1, boundary_kind="periodic",
                           initial=spec["initial"])


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_passes_the_checks_and_solves(name):
    pde = _problem(name)
    check_solver(pde)
    x = np.linspace(pde.x_min, pde.x_max, 33)
    t = pde.t_min + np.array([0.0, 0.01])  # a short solve: the checks, not the accuracy
    u = solve_reference(pde, x, t)
    assert u.shape == (t.size, x.size, 1) and u.dtype == np.float64
    # The registered initial value is the one the solver starts from (t is shifted by t_min).
    np.testing.assert_allclose(u[0], SOLVERS[name].initial(x), rtol=0, atol=1e-14)
    assert np.all(np.isfinite(u)) and np.max(np.abs(u[1] - u[0])) > 1e-3


@pytest.mark.parametrize("name, solver", [("kdv", kdv),
                                          ("kuramoto_sivashinsky", kuramoto_sivashinsky)])
def test_parameters_reach_the_solver(name, solver):
    # Values other than the benchmark's (the checks read only the names), each a different
    # number, so a parameter dropped or passed to the wrong argument changes the answer.
    benchmark = BENCHMARKS[name]["params"]
    params = {k: v * (1.1 + 0.1 * i) for i, (k, v) in enumerate(benchmark.items())}
    pde = _problem(name, params=params)
    check_solver(pde)
    x = np.linspace(pde.x_min, pde.x_max, 17)
    t = np.array([0.02])
    np.testing.assert_allclose(solve_reference(pde, x, pde.t_min + t)[..., 0],
                               solver(x, t, **params), rtol=0, atol=1e-12)
    assert np.max(np.abs(solver(x, t) - solver(x, t, **params))) > 1e-3


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_other_problems_are_refused(name):
    params = BENCHMARKS[name]["params"]
    missing = dict(list(params.items())[1:])
    with pytest.raises(ValueError, match=f"needs pde.params {next(iter(params))}"):
        check_solver(_problem(name, params=missing))
    with pytest.raises(ValueError, match="x_min/x_max"):
        check_solver(_problem(name, x_max=3.0))
    with pytest.raises(ValueError, match="initial"):
        check_solver(_problem(name, initial=lambda x: torch.sin(x)))
