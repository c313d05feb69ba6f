"""Reference solution of the Kuramoto-Sivashinsky equation (Fourier spectral + ETDRK4).

``u_t + alpha u u_x + beta u_xx + gamma u_xxxx = 0``, periodic, written for
:func:`solve_periodic` as ``u_t = L u + G(u^2)`` with ``L = -beta d^2/dx^2 - gamma d^4/dx^4``
(symbol ``beta k^2 - gamma k^4``: modes with ``k^2 < beta / gamma`` grow) and
``G = -alpha / 2 d/dx`` (symbol ``-i alpha k / 2``), ``u^2`` taken pointwise on the grid.

The benchmark: ``alpha = 100/16``, ``beta = 100/16^2``, ``gamma = 100/16^4``, ``u(x, 0) =
cos(x) (1 + sin(x))``, ``x in [0, 2 pi)``, ``t in [0, 1]``: jaxpi's ``ks_chaotic`` example
(Wang, Wang and Perdikaris, "An expert's guide to training physics-informed neural networks",
2023, and "PirateNets", 2024), whose README states these coefficients and initial value, whose
``examples/ks_chaotic/models.py`` has the same coefficients in its residual, and whose
``examples/ks_chaotic/data/gen_ks_chaotic.m`` made ``ks_chaotic.mat`` with them (Chebfun
``spin``, 511 modes, step ``1e-5``). It is Kassam and Trefethen's (2005) example ``u_t + u u_x +
u_xx + u_xxxx = 0`` on ``[0, 32 pi)``, ``t in [0, 100]``, ``u0 = cos(x/16) (1 + sin(x/16))``,
the setup of Raissi's DeepHPMs data (``Matlab/gen_data_KS_chaotic.m``), in the variables
``x / 16`` and ``t / 100``.

Round-off. The dynamics are chaotic: random relative perturbations of ``1e-14`` in the first 20
modes grow to ``0.8e-9 - 2.4e-9`` by ``t = 1``. Stepping in double, solutions with steps ``2e-5``,
``1e-5`` and ``5e-6`` (256 modes) differ from one with ``2.5e-6`` by ``3e-9 - 6e-9`` at ``t = 1``,
a floor that finer steps do not lower. The default therefore steps in long double
(:data:`EXTENDED`; double where the platform has no fast extended type, which leaves that floor).

Resolution, measured in long double as relative L2 differences on a 512-point grid at ``t =
0.1, 0.2, ..., 1``. In space, the Fourier coefficients at ``t = 1`` are ``1e-11`` of the
largest at mode 128 and ``6e-15`` at mode 160; 192 modes miss by ``3e-8`` (in double). In time,
with 256 modes, steps ``4e-5`` and ``2e-5`` differ by ``7.0e-9`` at ``t = 1``, ``2e-5`` and
``1e-5`` by ``4.4e-10`` (the fourth-order ratio 16). The defaults, 256 modes and
``dt = 1e-5``, differ from 512 modes with ``dt = 5e-6`` by ``3.2e-11`` at ``t = 1`` and by at
most ``4.0e-11`` over the times above. ``ks_chaotic.mat`` (computed in double) differs from them
by ``4.5e-11`` over ``t <= 0.5`` and by ``3.7e-9`` at ``t = 1``, its own round-off floor. One
solve to ``t = 1`` (512 x 251 points) took 14-22 s on a 2-core machine shared with other work
(load 2.5-3.5), 7-12 s stepping in double; the cost is proportional to ``t_max / dt``.

Other ``t_max``: 256 modes remain enough (the solution keeps a spectrum like that at ``t = 1``),
but the amplification keeps growing, about fivefold per ``0.1`` in time: perturbations of
``1e-14`` reach ``5e-10`` at ``t = 1``, ``2e-7`` at ``t = 1.5`` and ``7e-3`` at ``t = 2``, and steps
``2e-5`` and ``1e-5`` differ by ``4.4e-10``, ``3.6e-8`` and ``2.6e-4`` there. Much past ``t = 2``
no computation in double or long double pins the solution down point by point.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from pinn.reference.checks import check_domain, check_points
from pinn.reference.spectral import EXTENDED, Initial, solve_on_points, wavenumbers

__all__ = ["kuramoto_sivashinsky"]


def _initial(x: np.ndarray) -> np.ndarray:
    """The benchmark initial value ``cos(x) (1 + sin(x))``, shape like ``x``."""
    return np.cos(x) * (1.0 + np.sin(x))


def kuramoto_sivashinsky(
    x: np.ndarray,
    t: np.ndarray,
    alpha: float = 100.0 / 16.0,
    beta: float = 100.0 / 16.0**2,
    gamma: float = 100.0 / 16.0**4,
    n_modes: int = 256,
    dt: float = 1e-5,
    initial: Optional[Initial] = None,
    domain: Sequence[float] = (0.0, 2.0 * math.pi),
    dtype: type = EXTENDED,
) -> np.ndarray:
    """Reference solution of ``u_t + alpha u u_x + beta u_xx + gamma u_xxxx = 0``, periodic.

    Args:
        x: Positions, shape ``(n_x,)``; outside ``domain`` the periodic extension is returned.
        t: Times, shape ``(n_t,)``, ``>= 0``, in any order.
        alpha: Coefficient of the nonlinear term ``u u_x``.
        beta: Coefficient of ``u_xx`` (``> 0``: long waves grow).
        gamma: Coefficient of ``u_xxxx`` (``> 0``: short waves decay).
        n_modes: Fourier modes (grid points) on ``domain``.
        dt: Largest ETDRK4 step.
        initial: ``u(x, 0)``: a function of positions ``(n_modes,) -> (n_modes,)``, or its
            values on the grid ``x_min + (x_max - x_min) * arange(n_modes) / n_modes``;
            ``None`` for the benchmark's ``cos(x) (1 + sin(x))``.
        domain: The period ``(x_min, x_max)``.
        dtype: Precision of the time stepping: ``np.float64`` or ``np.longdouble`` (see the
            module docstring); the result is float64 either way.

    Returns:
        ``u`` of shape ``(n_t, n_x)``, float64, ``u[j, i] = u(x[i], t[j])``.

    Raises:
        ValueError: If ``x`` or ``t`` is not 1-D or not finite, a time is negative, the domain
            is not increasing, the initial value has the wrong shape, or another ``dtype``.
    """
    x, t = check_points(x, t)
    x_min, x_max = check_domain(domain)
    k = wavenumbers(n_modes, x_max - x_min)
    growth = beta * k**2 - gamma * k**4
    flux = -0.5j * alpha * k
    return solve_on_points(growth, np.square, _initial if initial is None else initial, domain,
                           x, t, dt, nonlinear_symbol=flux, dtype=dtype)
