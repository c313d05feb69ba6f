"""Tests for the Cole-Hopf reference solution of viscous Burgers (``pinn.reference.burgers``).

The first test compares with the published PINN benchmark data (``burgers_shock.mat``) and is
skipped when that file is not available. The others are independent of any data: they check the
PDE residual by finite differences before the shock forms, the energy balance after it has formed,
the initial and boundary conditions, symmetry and quadrature convergence.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tests.conftest import reference_dir

from pinn.reference.burgers import burgers_cole_hopf, recommended_n_quad

NU = 0.01 / math.pi

# Fourth-order central-difference weights on offsets -2..2.
_D1 = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0
_D2 = np.array([-1.0, 16.0, -30.0, 16.0, -1.0]) / 12.0
_OFFSETS = np.arange(-2, 3)




def _simpson(f: np.ndarray, dx: float) -> np.ndarray:
    """Composite Simpson rule along the last axis (odd number of points)."""
    n = f.shape[-1]
    w = np.ones(n)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return (f * w).sum(axis=-1) * dx / 3.0


def test_matches_published_burgers_shock_data():
    sio = pytest.importorskip("scipy.io")
    ref_dir = reference_dir()
    path = ref_dir / "raissi_pinns" / "burgers_shock.mat"
    if not path.is_file():
        pytest.skip(
            f"reference data ../shared/data/reference not found; looked for {path} "
            "(set PINN_REFERENCE_DATA to the 'reference' folder to use another location)"
        )
    data = sio.loadmat(str(path))
    x = data["x"].ravel()  # (256,)
    t = data["t"].ravel()  # (100,)
    usol = data["usol"]  # (256, 100): space along rows
    assert usol.shape == (x.size, t.size)

    u = burgers_cole_hopf(x, t, NU)
    assert u.shape == (t.size, x.size)
    rel_l2 = np.linalg.norm(u - usol.T) / np.linalg.norm(usol)
    assert rel_l2 <= 1e-6, f"relative L2 error against burgers_shock.mat: {rel_l2:.3e}"


def test_pde_residual_before_shock():
    # Smooth region: the shock at x = 0 forms around t = 1/pi. Fourth-order stencils with
    # h = 1e-3 leave a truncation residual of ~5e-8 of the term size; a 10% error in the
    # viscosity gives ~6e-3.
    h = 1e-3
    xs = np.linspace(-0.95, 0.95, 39)
    ts = np.linspace(0.05, 0.3, 9)
    xx = (xs[None, :] + h * _OFFSETS[:, None]).ravel()  # (5 * n_x,), offset-major
    tt = (ts[None, :] + h * _OFFSETS[:, None]).ravel()  # (5 * n_t,)
    v = burgers_cole_hopf(xx, tt, NU).reshape(5, ts.size, 5, xs.size)

    u = v[2, :, 2, :]
    u_t = np.einsum("a,aij->ij", _D1, v[:, :, 2, :]) / h
    u_x = np.einsum("a,iaj->ij", _D1, v[2]) / h
    u_xx = np.einsum("a,iaj->ij", _D2, v[2]) / h**2

    residual = u_t + u * u_x - NU * u_xx
    scale = np.max(np.abs(u_t) + np.abs(u * u_x) + np.abs(NU * u_xx))
    assert scale > 1.0  # the terms are O(1) here, so the bound below is meaningful
    assert np.max(np.abs(residual)) / scale < 1e-6


def test_energy_balance_after_shock():
    # With u(+-1, t) = 0: d/dt Int u^2 / 2 dx = -nu Int u_x^2 dx, shock or not.
    n_x = 4097
    dx = 2.0 / (n_x - 1)
    x_ghost = -1.0 + dx * np.arange(-2, n_x + 2)  # two points beyond each end for u_x
    t_c = np.array([0.5, 0.8])
    k = 1e-3
    tt = (t_c[:, None] + k * _OFFSETS[None, :]).ravel()  # (n_t * 5,), time-major
    v = burgers_cole_hopf(x_ghost, tt, NU).reshape(t_c.size, 5, n_x + 4)

    energy = _simpson(0.5 * v[..., 2:-2] ** 2, dx)  # (n_t, 5)
    d_energy = energy @ _D1 / k
    w = v[:, 2]
    u_x = (w[:, :-4] - 8.0 * w[:, 1:-3] + 8.0 * w[:, 3:-1] - w[:, 4:]) / (12.0 * dx)
    dissipation = -NU * _simpson(u_x**2, dx)

    assert np.all(dissipation < -0.1)
    np.testing.assert_allclose(d_energy, dissipation, rtol=1e-4)


def test_initial_and_boundary_conditions():
    x = np.linspace(-1.0, 1.0, 201)
    t = np.linspace(0.0, 1.0, 101)
    u = burgers_cole_hopf(x, t, NU)
    assert u.shape == (t.size, x.size)
    np.testing.assert_array_equal(u[0], -np.sin(np.pi * x))
    assert np.max(np.abs(u[:, [0, -1]])) <= 1e-12

    t_small = np.array([1e-10, 1e-8])
    u_small = burgers_cole_hopf(x, t_small, NU)
    err = np.max(np.abs(u_small + np.sin(np.pi * x)), axis=1)
    # u(x, t) + sin(pi x) = t * u_t + O(t^2) with |u_t| <= pi / 2 + nu pi^2.
    assert np.all(err <= 2.0 * t_small)


def test_odd_symmetry_and_bounds():
    x = np.linspace(-1.0, 1.0, 257)
    t = np.linspace(0.0, 1.0, 21)
    u = burgers_cole_hopf(x, t, NU)
    np.testing.assert_allclose(u[:, ::-1], -u, rtol=0.0, atol=1e-13)
    # Maximum principle: |u| never exceeds its initial maximum.
    assert np.max(np.abs(u)) <= 1.0 + 1e-12


def test_quadrature_converged():
    x = np.linspace(-1.0, 1.0, 129)
    t = np.array([0.1, 1.0 / math.pi, 0.5, 1.0])
    n = recommended_n_quad(NU, float(t.max()))
    u_coarse = burgers_cole_hopf(x, t, NU, n_quad=n)
    u_fine = burgers_cole_hopf(x, t, NU, n_quad=4 * n)
    u_default = burgers_cole_hopf(x, t, NU)
    np.testing.assert_allclose(u_coarse, u_fine, rtol=0.0, atol=1e-12)
    np.testing.assert_allclose(u_default, u_fine, rtol=0.0, atol=1e-12)


def test_warns_when_under_resolved():
    x = np.linspace(-1.0, 1.0, 5)
    t = np.array([0.0, 1.0])
    with pytest.warns(RuntimeWarning, match="n_quad"):
        burgers_cole_hopf(x, t, NU, n_quad=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        burgers_cole_hopf(x, t, NU)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nu": 0.0},
        {"nu": -1.0},
        {"nu": float("nan")},
        {"t": np.array([-0.1, 0.5])},
        {"x": np.zeros((2, 2))},
        {"n_quad": 1},
    ],
)
def test_rejects_invalid_input(kwargs):
    args = {"x": np.linspace(-1.0, 1.0, 4), "t": np.array([0.0, 0.5]), "nu": NU}
    args.update(kwargs)
    with pytest.raises(ValueError):
        burgers_cole_hopf(**args)


def test_empty_inputs():
    assert burgers_cole_hopf(np.array([]), np.array([0.5]), NU).shape == (1, 0)
    assert burgers_cole_hopf(np.array([0.0]), np.array([]), NU).shape == (0, 1)
