"""Reference solvers a problem can name (``pde.reference``), and the checks that it may.

A solver computes one specific problem. Before it is used, :func:`check_solver` verifies that
the configured problem is that problem where it can be checked mechanically: parameters, domain,
outputs, boundary kind, and the initial value (compared numerically on a grid).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class Solver:
    description: str
    params: Tuple[str, ...]
    domain: Tuple[float, float]  # (x_min, x_max)
    outputs: int
    boundary: str
    initial: Callable[[np.ndarray], np.ndarray]  # x (N,) -> (N, outputs)
    solve: Callable  # (x (Nx,), t (Nt,) from 0, params) -> (Nt, Nx, outputs)


def _cole_hopf(x, t, p):
    from pinn.reference.burgers import burgers_cole_hopf

    return burgers_cole_hopf(x, t, p["nu"])[..., None]


def _allen_cahn(x, t, p):
    from pinn.reference.spectral import allen_cahn

    return allen_cahn(x, t, d=p["d"], gamma=p["gamma"])[..., None]


def _nls(x, t, p):
    from pinn.reference.spectral import nls

    h = nls(x, t)
    return np.stack([h.real, h.imag], axis=-1)


def _kdv(x, t, p):
    from pinn.reference.kdv import kdv

    return kdv(x, t, lambda1=p["lambda1"], lambda2=p["lambda2"])[..., None]


def _kuramoto_sivashinsky(x, t, p):
    from pinn.reference.kuramoto_sivashinsky import kuramoto_sivashinsky

    return kuramoto_sivashinsky(x, t, alpha=p["alpha"], beta=p["beta"],
                                gamma=p["gamma"])[..., None]


SOLVERS: Dict[str, Solver] = {
    "cole_hopf": Solver("viscous Burgers, u(x,0) = -sin(pi x), u(+-1,t) = 0, by Cole-Hopf "
                        "quadrature", ("nu",), (-1.0, 1.0), 1, "dirichlet",
                        lambda x: -np.sin(np.pi * x)[:, None], _cole_hopf),
    "allen_cahn": Solver("Allen-Cahn u_t = d u_xx + gamma (u - u^3), periodic, "
                         "u(x,0) = x^2 cos(pi x), Fourier spectral + ETDRK4",
                         ("d", "gamma"), (-1.0, 1.0), 1, "periodic",
                         lambda x: (x**2 * np.cos(np.pi * x))[:, None], _allen_cahn),
    "nls": Solver("nonlinear Schrodinger i h_t + 0.5 h_xx + |h|^2 h = 0, periodic, "
                  "h(x,0) = 2 sech x, outputs (Re h, Im h), Fourier spectral + ETDRK4",
                  (), (-5.0, 5.0), 2, "periodic",
                  lambda x: np.stack([2 / np.cosh(x), 0 * x], axis=1), _nls),
    "kdv": Solver("Korteweg-de Vries u_t + lambda1 u u_x + lambda2 u_xxx = 0, periodic, "
                  "u(x,0) = cos(pi x), Fourier spectral + ETDRK4",
                  ("lambda1", "lambda2"), (-1.0, 1.0), 1, "periodic",
                  lambda x: np.cos(np.pi * x)[:, None], _kdv),
    "kuramoto_sivashinsky": Solver("Kuramoto-Sivashinsky u_t + alpha u u_x + beta u_xx + "
                                   "gamma u_xxxx = 0, periodic, u(x,0) = cos(x) (1 + sin(x)), "
                                   "Fourier spectral + ETDRK4 in extended precision",
                                   ("alpha", "beta", "gamma"), (0.0, 2.0 * math.pi), 1,
                                   "periodic",
                                   lambda x: (np.cos(x) * (1 + np.sin(x)))[:, None],
                                   _kuramoto_sivashinsky),
}


def check_solver(pde) -> None:
    """Raise ValueError (naming the key) unless ``pde`` is the problem its solver computes."""
    name = pde.reference_name
    if name not in SOLVERS:
        raise ValueError(f"pde.reference={name!r} is not allowed: one of {', '.join(SOLVERS)} "
                         "or null")
    s = SOLVERS[name]
    missing = [k for k in s.params if k not in pde.params]
    if missing:
        raise ValueError(f"pde.reference={name} needs pde.params {', '.join(missing)}")
    if (pde.x_min, pde.x_max) != s.domain:
        raise ValueError(f"pde.x_min/x_max={pde.x_min}/{pde.x_max} is not allowed with "
                         f"pde.reference={name}: {s.domain[0]}/{s.domain[1]}")
    if pde.n_out != s.outputs or pde.boundary_kind != s.boundary:
        raise ValueError(f"pde.reference={name} solves a problem with {s.outputs} output(s) and "
                         f"{s.boundary} boundaries; this one has {pde.n_out} and "
                         f"{pde.boundary_kind}")
    x = np.linspace(pde.x_min, pde.x_max, 101)
    configured = pde.initial(torch.as_tensor(x[:, None])).numpy()
    gap = float(np.max(np.abs(configured - s.initial(x))))
    if not gap <= 1e-12:
        raise ValueError(f"pde.initial differs from the initial value of pde.reference={name} "
                         f"({s.description}) by up to {gap:.3g}")


def solve_reference(pde, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(Nt, Nx, n_out) reference on the grid; t is shifted so the solver starts at 0."""
    return SOLVERS[pde.reference_name].solve(x, t - pde.t_min, pde.params)


__all__ = ["SOLVERS", "check_solver", "solve_reference"]
