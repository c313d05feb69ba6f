"""Tests for the Kuramoto-Sivashinsky reference (``pinn.reference.kuramoto_sivashinsky``).

Exact growth and decay of single modes without the nonlinear term, the residual of the full
equation, jaxpi's ``ks_chaotic.mat`` and ``ks.mat`` (skipped where absent), and (slow) the
self-convergence of the defaults at ``t = 1``, where round-off in double would not allow it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import load_jaxpi

from pinn.reference.kuramoto_sivashinsky import kuramoto_sivashinsky
from pinn.reference.metrics import relative_l2
from pinn.reference.spectral import EXTENDED

ALPHA, BETA, GAMMA = 100.0 / 16.0, 100.0 / 16.0**2, 100.0 / 16.0**4
# Fourth-order central-difference weights for a first derivative on offsets -2..2.
_D1 = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0
_OFFSETS = np.arange(-2, 3)


@pytest.mark.parametrize("dtype", [np.float64, EXTENDED], ids=["double", "extended"])
def test_linear_modes_grow_and_decay_exactly(dtype):
    # alpha = 0: each mode evolves by exp((beta k^2 - gamma k^4) t), which ETDRK4 integrates
    # exactly whatever the step. On [-1, 3) mode n has k = n pi / 2: n = 6 grows (rate 19.7),
    # n = 25 decays (rate -4100); a sign error in beta or gamma is off by orders of magnitude.
    domain, beta, gamma = (-1.0, 3.0), 0.4, 0.002
    k_grow, k_decay = 6 * math.pi / 2, 25 * math.pi / 2

    def exact(x, t):
        grow = np.exp((beta * k_grow**2 - gamma * k_grow**4) * t)
        decay = np.exp((beta * k_decay**2 - gamma * k_decay**4) * t)
        return (0.1 * grow * np.cos(k_grow * (x + 1.0))
                + 2.0 * decay * np.sin(k_decay * (x + 1.0) + 0.3))

    x = np.linspace(-1.0, 3.0, 57)
    t = np.array([0.0, 0.001, 0.05, 0.1])
    u = kuramoto_sivashinsky(x, t, alpha=0.0, beta=beta, gamma=gamma, n_modes=64, dt=0.01,
                             initial=lambda z: exact(z, 0.0), domain=domain, dtype=dtype)
    assert u.dtype == np.float64
    want = exact(x[None, :], t[:, None])  # (n_t, n_x); the growing mode reaches 0.72
    np.testing.assert_allclose(u, want, rtol=0, atol=1e-12)


def test_residual_of_the_benchmark():
    # The full equation, nonlinear term included: u_t by fourth-order differences in time,
    # x-derivatives exactly on the 256-mode grid, at t = 0.1 and 0.3 (before the chaos).
    m = 256
    x = 2.0 * math.pi * np.arange(m) / m
    k = 2.0 * math.pi * np.fft.fftfreq(m, d=2.0 * math.pi / m)
    t_c, h_t = np.array([0.1, 0.3]), 2e-4
    tt = (t_c[:, None] + h_t * _OFFSETS[None, :]).ravel()  # (n_t * 5,), time-major
    v = kuramoto_sivashinsky(x, tt, dt=4e-5, dtype=np.float64).reshape(t_c.size, 5, m)
    u = v[:, 2]
    u_t = np.einsum("a,iaj->ij", _D1, v) / h_t
    u_hat = np.fft.fft(u, axis=1)

    def d(power):
        return np.fft.ifft((1j * k) ** power * u_hat, axis=1).real

    terms = [u_t, ALPHA * u * d(1), BETA * d(2), GAMMA * d(4)]
    scale = np.max(sum(np.abs(term) for term in terms))
    assert scale > 100.0  # the terms are large and nearly cancel
    # 2.2e-8 measured (the smallest resolved scales, amplified by k^4); alpha 1% off gives
    # 2.8e-3, its sign flipped 0.6.
    assert np.max(np.abs(sum(terms))) / scale < 1e-6


def test_matches_jaxpi_ks_chaotic_first_half():
    x, t, usol = load_jaxpi("ks_chaotic.mat")  # (511,), (251,), (251, 511)
    t, usol = t[:126], usol[:126]  # t in [0, 0.5]
    # A coarser step in double is enough before the chaos amplifies round-off: 1.4e-10.
    rel = relative_l2(kuramoto_sivashinsky(x, t, dt=5e-5, dtype=np.float64), usol)
    assert rel <= 1e-9, f"relative L2 error against ks_chaotic.mat: {rel:.3e}"


def test_matches_jaxpi_ks_other_setup():
    # jaxpi's other KS case: u_t + 5 u u_x + 0.5 u_xx + 0.005 u_xxxx = 0 on [-1, 1),
    # u(x, 0) = -sin(pi x): other coefficients, period and initial value.
    x, t, usol = load_jaxpi("ks.mat")  # (511,), (251,) in [0, 1], (251, 511)
    u = kuramoto_sivashinsky(x, t, alpha=5.0, beta=0.5, gamma=0.005, dt=1e-4,
                             initial=lambda z: -np.sin(np.pi * z), domain=(-1.0, 1.0),
                             dtype=np.float64)
    rel = relative_l2(u, usol)
    assert rel <= 1e-8, f"relative L2 error against ks.mat: {rel:.3e}"  # 1.0e-9 measured


@pytest.mark.slow
@pytest.mark.skipif(EXTENDED is np.float64, reason="no fast extended precision on this "
                    "platform: in double, round-off limits t = 1 to about 3e-9")
def test_defaults_self_converged_at_t1():
    # The defaults (256 modes, dt = 1e-5, extended precision) against twice the modes and half
    # the step: 3.2e-11 at t = 1 (double: 3e-9 whatever the step). About 1.5 min on 2 cores.
    x = 2.0 * math.pi * np.arange(512) / 512
    t = np.array([0.5, 1.0])
    coarse = kuramoto_sivashinsky(x, t)
    fine = kuramoto_sivashinsky(x, t, n_modes=512, dt=5e-6)
    for j in range(t.size):
        rel = relative_l2(coarse[j], fine[j])
        assert rel <= 1e-10, f"t = {t[j]}: {rel:.3e}"
