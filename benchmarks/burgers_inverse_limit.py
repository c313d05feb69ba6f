"""What noisy Burgers observations can tell about lambda1 and lambda2, whatever the method.

    python benchmarks/burgers_inverse_limit.py [--seeds 0 1 2] [--draws 200] [--n 2000]
                                               [--noise 0.01] [--file obs.npz]

The identification benchmark of Raissi et al. 2019 (section 4.1.1) asks for the coefficients of
``u_t + lambda1 u u_x - lambda2 u_xx = 0`` from ``n`` noisy values of u. This script fits the
two coefficients with the exact solution family instead of a network: for u(x, 0) = -sin(pi x)
and u(+-1, t) = 0, a change of time ``tau = lambda1 t`` gives

    u(x, t; lambda1, lambda2) = U(x, lambda1 t; nu = lambda2 / lambda1),

where U is the Cole-Hopf solution of ``U_tau + U U_x = nu U_xx`` (``pinn.reference.burgers``),
exact to rounding. A least-squares fit of (lambda1, lambda2) over that family is the maximum
likelihood estimate for Gaussian noise of one level, and it knows the initial and boundary
values, which the network of ``experiment=burgers_inverse`` is not given; no method can be
expected to do better on the same observations. Reported per observation file:

- the fitted coefficients' relative errors, and
- their Cramer-Rao standard deviations, ``sigma^2 (J^T J)^-1`` with J the Jacobian of the
  model at the fit and sigma = noise x std(u) (the noise model of ``python -m pinn.data``).

``--seeds`` draws the files exactly as ``python -m pinn.data pde=burgers n=N noise=L seed=s``
does (same points, same noise); ``--draws K`` repeats that for seeds 0..K-1 and prints the
distribution of the errors (median, 90th percentile, share within 0.1% and 0.3%). ``--file``
fits a given observation file (columns x, t, u).
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Dict, Tuple

import numpy as np
from scipy.optimize import least_squares

NU = 0.01 / math.pi  # the true lambda2; lambda1 = 1


def model(lam1: float, lam2: float, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """u(x_i, t_i; lambda1, lambda2) for the Burgers benchmark, exact (Cole-Hopf)."""
    from pinn.reference.burgers import burgers_cole_hopf

    xs, ix = np.unique(x, return_inverse=True)
    ts, it = np.unique(t, return_inverse=True)
    return burgers_cole_hopf(xs, lam1 * ts, lam2 / lam1)[it, ix]


def fit(x: np.ndarray, t: np.ndarray, u: np.ndarray, noise: float) -> Dict[str, float]:
    """Least-squares (lambda1, lambda2) from a wrong start (0.9, 1.1 x truth), with the
    Cramer-Rao standard deviations of both for noise x std(u)."""
    def misfit(p):
        return model(p[0], p[1] * NU, x, t) - u

    sol = least_squares(misfit, [0.9, 1.1], diff_step=1e-7, xtol=1e-13, ftol=1e-13,
                        gtol=1e-13)
    if not sol.success:
        raise RuntimeError(f"least squares did not converge: {sol.message}")
    out = {"lambda1": float(sol.x[0]), "lambda2": float(sol.x[1] * NU),
           "lambda1_err": abs(sol.x[0] - 1.0), "lambda2_err": abs(sol.x[1] - 1.0),
           "rms_misfit": float(np.sqrt(np.mean(sol.fun ** 2)))}
    if noise > 0:
        sigma = noise * float(np.std(model(1.0, NU, x, t)))
        cov = sigma ** 2 * np.linalg.inv(sol.jac.T @ sol.jac)
        out["lambda1_sd"] = math.sqrt(cov[0, 0])
        out["lambda2_sd"] = math.sqrt(cov[1, 1])  # relative: p[1] is lambda2 / truth
    return out


@functools.lru_cache(maxsize=1)
def burgers():
    """The problem ``pde=burgers`` and its evaluation grid (nx, nt), as pinn.data builds them."""
    from pinn.cli import check_overrides
    from pinn.config import register_configs
    from pinn.pdes import build_pde

    register_configs()
    cfg = check_overrides("train", ["pde=burgers"])
    return build_pde(cfg.pde), (cfg.pde.eval_nx, cfg.pde.eval_nt)


def draw(n: int, noise: float, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observations ``python -m pinn.data pde=burgers n=.. noise=.. seed=..`` writes."""
    from pinn.data import synthesize

    pde, grid = burgers()
    cols = synthesize(pde, n, noise, seed, *grid)
    return cols["x"], cols["t"], cols["u"]


def line(name: str, r: Dict[str, float]) -> str:
    s = (f"{name}: lambda1 {r['lambda1']:.7f} (error {r['lambda1_err']:.2e}), lambda2 "
         f"{r['lambda2']:.7f} (error {r['lambda2_err']:.2e}), rms misfit {r['rms_misfit']:.3e}")
    if "lambda1_sd" in r:
        s += f"; Cramer-Rao sd {r['lambda1_sd']:.2e} / {r['lambda2_sd']:.2e}"
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--draws", type=int, default=0)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--file", help="an observation file (x, t, u) to fit instead")
    a = ap.parse_args(argv)
    if a.file:
        from pathlib import Path

        from pinn.data import read_table

        cols = read_table(Path(a.file))
        print(line(a.file, fit(cols["x"], cols["t"], cols["u"], a.noise)))
        return 0
    for s in a.seeds:
        print(line(f"seed {s}", fit(*draw(a.n, a.noise, s), a.noise)), flush=True)
    if a.draws:
        rs = [fit(*draw(a.n, a.noise, s), a.noise) for s in range(a.draws)]
        print(f"\n{a.draws} draws (seeds 0-{a.draws - 1}), n={a.n}, noise={a.noise:g}:")
        for k in ("lambda1", "lambda2"):
            e = np.array([r[f"{k}_err"] for r in rs])
            signed = np.array([r[k] for r in rs]) / (1.0 if k == "lambda1" else NU) - 1.0
            sd = np.median([r.get(f"{k}_sd", 0.0) for r in rs])
            print(f"  {k}: |error| median {np.median(e):.2e}, 90th percentile "
                  f"{np.quantile(e, 0.9):.2e}, max {e.max():.2e}; within 1e-3: "
                  f"{np.mean(e <= 1e-3):.0%}, within 3e-3: {np.mean(e <= 3e-3):.0%}; "
                  f"sd of the estimates {signed.std(ddof=1):.2e} (Cramer-Rao {sd:.2e}), "
                  f"mean {signed.mean():+.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
