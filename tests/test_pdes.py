"""Each problem's residual, initial and boundary data against its exact or reference solution."""
import math

import numpy as np
import pytest
import torch

from pinn.derivatives import compute_derivatives
from pinn.expressions import ExpressionError
from pinn.pdes import build_pde
from tests.conftest import compose_cfg

F64 = torch.float64


def make(name, **overrides):
    cfg = compose_cfg([f"pde={name}", *[f"pde.{k}={v}" for k, v in overrides.items()]])
    return build_pde(cfg.pde)


def test_heat_residual_vanishes_on_closed_form():
    pde = make("heat")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(300, 1, generator=g, dtype=F64) * 2 - 1)
    t = torch.rand(300, 1, generator=g, dtype=F64)
    d = compute_derivatives(lambda xt: pde.exact(xt[:, :1], xt[:, 1:]), x, t, pde.derivatives)
    res = pde.residual(x, t, d)
    scale = d["Ut"].abs().max()
    assert res.abs().max() / scale < 1e-13
    # And a wrong kappa leaves a residual of the size of the terms.
    wrong = make("heat", **{"params.kappa": 0.2})
    assert wrong.residual(x, t, d).abs().max() / scale > 0.5


def test_heat_conditions_and_reference():
    pde = make("heat")
    x = torch.linspace(-1, 1, 11, dtype=F64)[:, None]
    assert torch.allclose(pde.exact(x, torch.zeros_like(x)), pde.initial(x), atol=1e-15)
    for xb in (-1.0, 1.0):
        tb = torch.linspace(0, 1, 5, dtype=F64)[:, None]
        assert pde.exact(torch.full_like(tb, xb), tb).abs().max() < 1e-14
        assert torch.equal(pde.boundary("left" if xb < 0 else "right", tb), torch.zeros_like(tb))
    ref = pde.reference(np.linspace(-1, 1, 5), np.linspace(0, 1, 3))
    assert ref.shape == (3, 5, 1)
    assert math.isclose(ref[2, 1, 0], math.sin(2 * math.pi * 0.25) * math.exp(-0.1 * (2 * math.pi / 2) ** 2),
                        abs_tol=1e-15)


def test_burgers_residual_with_manufactured_derivatives():
    pde = make("burgers")
    nu = pde.params["nu"]
    assert math.isclose(nu, 0.01 / math.pi, rel_tol=1e-15)
    d = {k: torch.tensor([[v]], dtype=F64) for k, v in
         {"U": 2.0, "Ux": 3.0, "Ut": 5.0, "Uxx": 7.0}.items()}
    x = t = torch.zeros(1, 1, dtype=F64)
    assert math.isclose(pde.residual(x, t, d).item(), 5 + 2 * 3 - nu * 7, rel_tol=1e-15)


def test_burgers_residual_small_on_reference():
    """Residual of the Cole-Hopf reference by finite differences, before the shock forms."""
    pde = make("burgers")
    x = np.linspace(-0.9, 0.9, 721)
    t = np.linspace(0.05, 0.2, 61)
    u = pde.reference(x, t)[..., 0]  # (Nt, Nx)
    hx, ht = x[1] - x[0], t[1] - t[0]
    ut = np.gradient(u, ht, axis=0, edge_order=2)
    ux = np.gradient(u, hx, axis=1, edge_order=2)
    uxx = np.gradient(ux, hx, axis=1, edge_order=2)
    res = (ut + u * ux - pde.params["nu"] * uxx)[2:-2, 2:-2]
    # Second-order FD error at this spacing is ~2e-4; a 10% error in nu gives 5e-3.
    assert np.abs(res).max() / np.abs(ut).max() < 1e-3
    # The initial and boundary data of the problem agree with the reference.
    ref0 = pde.reference(np.linspace(-1, 1, 9), np.array([0.0, 0.5]))[..., 0]
    xs = torch.linspace(-1, 1, 9, dtype=F64)[:, None]
    assert np.allclose(ref0[0], pde.initial(xs)[:, 0].numpy(), atol=1e-14)
    assert abs(ref0[1, 0]) < 1e-12 and abs(ref0[1, -1]) < 1e-12


def test_an_undefined_parameter_is_refused_naming_it():
    cfg = compose_cfg(["pde=heat", "pde.residual=u_t - speed*u_xx"])
    with pytest.raises(ExpressionError, match=r"pde.residual: .*'speed'.*allowed names: .*kappa"):
        build_pde(cfg.pde)


def test_params_may_be_constant_expressions_using_earlier_params():
    cfg = compose_cfg(["pde=heat", "+pde.params.k2=k**2/pi"])
    assert build_pde(cfg.pde).params["k2"] == pytest.approx(4 / math.pi, rel=1e-15)
