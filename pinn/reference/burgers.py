"""Exact reference solution of the viscous Burgers equation (Cole-Hopf).

The problem is the standard PINN benchmark

    u_t + u u_x = nu u_xx,   x in [-1, 1],   t >= 0,
    u(x, 0) = -sin(pi x),    u(-1, t) = u(1, t) = 0,

with ``nu = 0.01 / pi`` in the usual setting. The initial data is odd and 2-periodic, so the
Dirichlet problem coincides with the whole-line problem for the 2-periodic extension of
``-sin(pi x)``. The Cole-Hopf substitution ``u = -2 nu (log phi)_x`` turns that into the heat
equation ``phi_t = nu phi_xx`` with ``phi(y, 0) = f(y) = exp(-cos(pi y) / (2 pi nu))``, and the
heat kernel gives

    u(x, t) = - Int sin(pi (x - eta)) f(x - eta) G(eta) d eta / Int f(x - eta) G(eta) d eta,
    G(eta) = exp(-eta^2 / (4 nu t)).

Numerics. With ``eta = s z`` and ``s = sqrt(4 nu t)`` both integrals carry the weight

    w(z) = exp(E(z)),   E(z) = -A cos(pi (x - s z)) - z^2,   A = 1 / (2 pi nu),

where ``A = 50`` in the benchmark, so ``w`` spans dozens of orders of magnitude and overflows or
underflows if exponentiated directly. The common factor cancels in the ratio, so ``E`` is shifted
by its maximum over the nodes for each ``x`` before exponentiating (log-sum-exp), which makes the
largest weight exactly 1. Since ``-A <= E(0)`` and ``E(z) <= A - z^2``, everything beyond
``|z| = Z = sqrt(2 A + 40)`` is below ``exp(-40)`` of the peak, so the integrals are truncated
to ``[-Z, Z]``. The integrand is smooth (entire) and negligible at both ends, so the trapezoidal
rule on equispaced nodes converges exponentially; the end weights are themselves negligible and a
plain sum is used. The trigonometric factors are split with the addition theorems,
``cos(pi (x - s z)) = cos(pi x) cos(pi s z) + sin(pi x) sin(pi s z)`` (likewise for ``sin``), so
the only per-(x, node) transcendental is one ``exp`` and the quadrature sums are matrix-vector
products. ``x`` is processed in chunks to bound memory.

Resolution. The weight's peak has a width of about ``1 / sqrt(2 pi t + 2)`` in ``z`` (the
curvature of ``E`` is at most ``2 pi t + 2`` because ``A pi^2 s^2 = 2 pi t``), and it oscillates
with angular frequency ``pi s``. With node spacing ``h = 2 Z / (n_quad - 1)``, a product
``h * max(sqrt(2 pi t + 2), pi s)`` of about 0.6 or less gives errors at round-off level; the
number of nodes needed therefore grows like ``nu^(-1/2)`` and like ``t^(1/2)``. The default
``n_quad = 512`` is several times what the benchmark needs up to ``t = 1`` (it is converged to
round-off there from about 128 nodes on), and meets the estimate for ``nu`` down to about
``1.2e-4`` at ``t <= 1``. A :class:`RuntimeWarning` is issued when ``n_quad`` is below the estimate.

Symmetric nodes make the integrand of the numerator at ``x = +-1`` odd in ``z``, so the boundary
values vanish to round-off.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from pinn.reference.checks import check_points

__all__ = ["burgers_cole_hopf", "recommended_n_quad"]

#: Half-width of the truncated ``z`` range is ``sqrt(2 A + _TAIL)``; the tail is below exp(-_TAIL).
_TAIL = 40.0
#: Target of ``h * max(sqrt(2 pi t + 2), pi s)`` for round-off-level trapezoidal sums.
_SPACING_FACTOR = 0.6
#: Number of float64 entries in one chunk of the (x, node) weight matrix (8 MiB).
_CHUNK_ELEMS = 1 << 20


def _half_width(nu: float) -> float:
    """Half-width ``Z`` of the truncated quadrature range in ``z = eta / sqrt(4 nu t)``."""
    a = 1.0 / (2.0 * math.pi * nu)
    return math.sqrt(2.0 * a + _TAIL)


def recommended_n_quad(nu: float, t_max: float) -> int:
    """Smallest node count the resolution estimate deems converged for times up to ``t_max``.

    Args:
        nu: Viscosity, ``> 0``.
        t_max: Largest time of interest, ``>= 0``.

    Returns:
        The estimated number of trapezoidal nodes for round-off-level accuracy (see the module
        docstring); at least 2.
    """
    z_half = _half_width(nu)
    s = math.sqrt(4.0 * nu * t_max)
    scale = max(math.sqrt(2.0 * math.pi * t_max + 2.0), math.pi * s)
    return max(2, math.ceil(2.0 * z_half * scale / _SPACING_FACTOR) + 1)


def burgers_cole_hopf(x: np.ndarray, t: np.ndarray, nu: float, n_quad: int = 512) -> np.ndarray:
    """Evaluate the exact solution of ``u_t + u u_x = nu u_xx``, ``u(x, 0) = -sin(pi x)``.

    The result is the solution of the Dirichlet problem on ``[-1, 1]`` with ``u(+-1, t) = 0``;
    outside ``[-1, 1]`` it is the solution for the 2-periodic, odd extension of the data.

    Args:
        x: Positions, 1-D float array of shape ``(n_x,)``.
        t: Times, 1-D float array of shape ``(n_t,)``, all ``>= 0``. Rows with ``t == 0`` are
            ``-sin(pi x)`` exactly.
        nu: Viscosity, ``> 0`` (``0.01 / pi`` in the usual benchmark).
        n_quad: Number of equispaced trapezoidal nodes per integral. Round-off-level accuracy
            needs about :func:`recommended_n_quad` nodes; fewer triggers a ``RuntimeWarning``.

    Returns:
        ``u`` of shape ``(n_t, n_x)``, float64: time along rows, ``u[j, i] = u(x[i], t[j])``.

    Raises:
        ValueError: If ``x`` or ``t`` is not 1-D or not finite, a time is negative, ``nu`` is not
            a positive finite number, or ``n_quad < 2``.
    """
    x, t = check_points(x, t)
    nu = float(nu)
    if not (math.isfinite(nu) and nu > 0.0):
        raise ValueError(f"nu must be a positive finite number, got {nu!r}")
    n_quad = int(n_quad)
    if n_quad < 2:
        raise ValueError(f"n_quad must be >= 2, got {n_quad}")

    out = np.empty((t.size, x.size), dtype=np.float64)
    if out.size == 0:
        return out

    t_max = float(t.max())
    needed = recommended_n_quad(nu, t_max)
    if n_quad < needed:
        warnings.warn(
            f"n_quad={n_quad} is below the estimated {needed} nodes needed for nu={nu:g} up to "
            f"t={t_max:g}; the Cole-Hopf quadrature may be inaccurate",
            RuntimeWarning,
            stacklevel=2,
        )

    a = 1.0 / (2.0 * math.pi * nu)
    z = np.linspace(-_half_width(nu), _half_width(nu), n_quad)
    z_sq = z * z
    # Columns: cos(pi x), sin(pi x); rows of the chunk matrix multiply them below.
    trig_x = np.stack([np.cos(np.pi * x), np.sin(np.pi * x)], axis=1)  # (n_x, 2)
    rows = max(1, _CHUNK_ELEMS // n_quad)

    for j, tj in enumerate(t):
        if tj == 0.0:
            out[j] = -trig_x[:, 1]
            continue
        s = math.sqrt(4.0 * nu * tj)
        cz = np.cos(np.pi * s * z)
        sz = np.sin(np.pi * s * z)
        # E = -A (cos(pi x) cz + sin(pi x) sz) - z^2, as a (rows, 2) @ (2, n_quad) product.
        coef = np.stack([-a * cz, -a * sz])  # (2, n_quad)
        for lo in range(0, x.size, rows):
            hi = min(lo + rows, x.size)
            tx = trig_x[lo:hi]
            expo = tx @ coef  # (chunk, n_quad)
            expo -= z_sq
            expo -= expo.max(axis=1, keepdims=True)
            np.exp(expo, out=expo)
            den = expo.sum(axis=1)
            c_sum = expo @ cz  # Int cos(pi s z) w
            s_sum = expo @ sz  # Int sin(pi s z) w
            # sin(pi (x - s z)) = sin(pi x) cos(pi s z) - cos(pi x) sin(pi s z)
            out[j, lo:hi] = -(tx[:, 1] * c_sum - tx[:, 0] * s_sum) / den
    return out
