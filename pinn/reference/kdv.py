"""Reference solution of the Korteweg-de Vries equation (Fourier spectral + ETDRK4).

``u_t + lambda1 u u_x + lambda2 u_xxx = 0``, periodic, written for :func:`solve_periodic` as
``u_t = L u + G(u^2)`` with ``L = -lambda2 d^3/dx^3`` (symbol ``i lambda2 k^3``) and
``G = -lambda1 / 2 d/dx`` (symbol ``-i lambda1 k / 2``): the conservation form of
``-lambda1 u u_x``, with ``u^2`` taken pointwise on the grid and not dealiased.

The benchmark is Zabusky and Kruskal's (1965, Phys. Rev. Lett. 15, 240) setup, ``u(x, 0) =
cos(pi x)`` on the period ``[-1, 1)``, ``t in [0, 1]``, with ``lambda1 = 1`` and the dispersion
``lambda2 = 0.0025`` of Raissi, Perdikaris and Karniadakis (2019, J. Comput. Phys. 378,
686-707; data set ``KdV.mat``). Zabusky and Kruskal's own ``lambda2 = 0.022^2`` is jaxpi's
``kdv.mat``.

Resolution, measured as relative L2 differences on a 512-point grid at ``t = 0.1, 0.2, ...,
1``. The solution stays smooth: at ``t = 1`` its Fourier coefficients are ``4e-13`` of the
largest at mode 64 (``|k| = 64 pi``) and ``1e-17`` from mode 96 on, so space is not limiting;
128 and 256 modes differ by at most ``3.3e-12``. Time stepping is: with 256 modes, ``dt = 4e-4`` and
``2e-4`` differ by ``7.1e-10`` at ``t = 1`` (the fourth-order ratio 16 puts the error of
``2e-4`` at about ``4.5e-11``). The defaults, 256 modes and ``dt = 2e-4``, differ from 512 modes
with ``dt = 1e-4`` by ``4.3e-11`` at ``t = 1`` (the largest over the times above), and from 1024
modes with ``dt = 2.5e-5`` by ``4.6e-11``. They match ``KdV.mat`` (a 512-point grid, 201 times)
to ``2.4e-11``. One solve on that grid took 0.35-0.9 s on a 2-core machine shared with other
work (load 2.5-3.5); the cost is proportional to ``t_max / dt``.

For other ``lambda2`` or ``t_max`` check the resolution the same way: a smaller ``lambda2``
(narrower solitons) or a longer time (taller ones) needs more modes or a smaller step. jaxpi's
``kdv.mat`` (``lambda2 = 0.022^2``, 511 modes) is reproduced to ``2.7e-9`` with the defaults and
to ``1.7e-10`` with 511 modes and ``dt = 1e-4``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from pinn.reference.checks import check_domain, check_points
from pinn.reference.spectral import Initial, solve_on_points, wavenumbers

__all__ = ["kdv"]


def _initial(x: np.ndarray) -> np.ndarray:
    """The benchmark initial value ``cos(pi x)``, shape like ``x``."""
    return np.cos(np.pi * x)


def kdv(
    x: np.ndarray,
    t: np.ndarray,
    lambda1: float = 1.0,
    lambda2: float = 0.0025,
    n_modes: int = 256,
    dt: float = 2e-4,
    initial: Optional[Initial] = None,
    domain: Sequence[float] = (-1.0, 1.0),
) -> np.ndarray:
    """Reference solution of ``u_t + lambda1 u u_x + lambda2 u_xxx = 0``, periodic.

    Args:
        x: Positions, shape ``(n_x,)``; outside ``domain`` the periodic extension is returned.
        t: Times, shape ``(n_t,)``, ``>= 0``, in any order.
        lambda1: Coefficient of the nonlinear term ``u u_x``.
        lambda2: Coefficient of the dispersion ``u_xxx``.
        n_modes: Fourier modes (grid points) on ``domain``.
        dt: Largest ETDRK4 step.
        initial: ``u(x, 0)``: a function of positions ``(n_modes,) -> (n_modes,)``, or its
            values on the grid ``x_min + (x_max - x_min) * arange(n_modes) / n_modes``;
            ``None`` for the benchmark's ``cos(pi x)``.
        domain: The period ``(x_min, x_max)``.

    Returns:
        ``u`` of shape ``(n_t, n_x)``, float64, ``u[j, i] = u(x[i], t[j])``.

    Raises:
        ValueError: If ``x`` or ``t`` is not 1-D or not finite, a time is negative, the domain
            is not increasing, or the initial value has the wrong shape.
    """
    x, t = check_points(x, t)
    x_min, x_max = check_domain(domain)
    k = wavenumbers(n_modes, x_max - x_min)
    dispersion = 1j * lambda2 * k**3
    flux = -0.5j * lambda1 * k
    return solve_on_points(dispersion, np.square, _initial if initial is None else initial,
                           domain, x, t, dt, nonlinear_symbol=flux)
