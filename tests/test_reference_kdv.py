"""Tests for the KdV reference solution (``pinn.reference.kdv``).

Against the closed-form soliton (with other coefficients, a wider period and the initial value
as a function and as grid values), published data (Raissi et al. ``KdV.mat``, jaxpi's
``kdv.mat``; skipped where absent), and the self-convergence of the defaults.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_jaxpi, load_raissi

from pinn.reference.kdv import kdv
from pinn.reference.metrics import relative_l2

# A soliton of u_t + LAMBDA1 u u_x + LAMBDA2 u_xxx = 0 with speed C, centred at X0 at t = 0. On
# [-3, 3) it stays >= 2.25 from the ends over t in [0, 1], where sech^2 is below 1e-18 of its
# peak, so the periodic problem has it as its solution to round-off.
LAMBDA1, LAMBDA2, C, X0 = 2.0, 0.004, 1.5, -0.75
DOMAIN = (-3.0, 3.0)


def _soliton(x: np.ndarray, t: float) -> np.ndarray:
    width = 0.5 * np.sqrt(C / LAMBDA2)
    return 3.0 * C / LAMBDA1 / np.cosh(width * (x - C * t - X0)) ** 2


@pytest.mark.parametrize("as_values", [False, True], ids=["function", "grid_values"])
def test_kdv_soliton(as_values):
    n_modes = 384
    x = np.linspace(DOMAIN[0], DOMAIN[1], 301)
    t = np.array([0.0, 0.25, 0.5, 1.0])
    grid = DOMAIN[0] + (DOMAIN[1] - DOMAIN[0]) * np.arange(n_modes) / n_modes
    initial = _soliton(grid, 0.0) if as_values else (lambda z: _soliton(z, 0.0))
    u = kdv(x, t, lambda1=LAMBDA1, lambda2=LAMBDA2, n_modes=n_modes, dt=1e-4, initial=initial,
            domain=DOMAIN)
    assert u.shape == (t.size, x.size) and u.dtype == np.float64
    exact = _soliton(x[None, :], t[:, None])  # (n_t, n_x), peak 2.25
    # The step leaves 5.7e-10 (dt = 5e-5: 3e-11); the wrong sign of either coefficient gives
    # about 2, lambda1 1% off 0.3.
    np.testing.assert_allclose(u, exact, rtol=0, atol=2e-9)


def test_kdv_matches_raissi_data():
    x, t, uu = load_raissi("KdV.mat")  # (512,) the periodic grid on [-1, 1), (201,), (201, 512)
    rel = relative_l2(kdv(x, t), uu)
    # 2.4e-11 measured: the data's own 512-point discretisation is converged as well.
    assert rel <= 1e-10, f"relative L2 error against KdV.mat: {rel:.3e}"


def test_kdv_matches_jaxpi_data():
    # Zabusky and Kruskal's dispersion 0.022^2, on jaxpi's grid (511 modes).
    x, t, usol = load_jaxpi("kdv.mat")  # (511,), (201,), (201, 511)
    rel = relative_l2(kdv(x, t, lambda2=0.022**2, n_modes=511, dt=1e-4), usol)
    assert rel <= 1e-9, f"relative L2 error against kdv.mat: {rel:.3e}"  # 1.7e-10 measured


def test_kdv_defaults_self_converged():
    # The defaults (256 modes, dt = 2e-4) against twice the modes and half the step.
    x = -1.0 + 2.0 * np.arange(512) / 512
    t = np.array([0.5, 1.0])
    coarse = kdv(x, t)
    fine = kdv(x, t, n_modes=512, dt=1e-4)
    for j in range(t.size):
        rel = relative_l2(coarse[j], fine[j])
        assert rel <= 1e-10, f"t = {t[j]}: {rel:.3e}"  # 4.3e-11 at t = 1
    # The dynamics are not trivial: solitons taller than the initial wave have formed.
    assert np.max(coarse[-1]) > 2.0


def test_kdv_rejects_bad_domain_and_initial():
    x, t = np.zeros(3), np.array([0.1])
    with pytest.raises(ValueError, match="domain"):
        kdv(x, t, domain=(1.0, -1.0))
    with pytest.raises(ValueError, match="initial value"):
        kdv(x, t, n_modes=64, initial=np.zeros(63))
