"""Collocation points: interior, initial and boundary sets, uniform or scrambled Sobol."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from torch.quasirandom import SobolEngine

from pinn.sampling.rad import rad_select

# (x, t) -> (M,) absolute PDE residual of candidate points
Residual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Batch:
    """One draw of training points; every tensor is (N, 1).

    Boundary points come in pairs: the first half of ``x_bc``/``t_bc`` lies at x_min, the second
    half at x_max with the same times, so that periodic conditions can compare the two ends.
    """

    x_int: torch.Tensor
    t_int: torch.Tensor
    x_ic: torch.Tensor
    t_ic: torch.Tensor
    x_bc: torch.Tensor
    t_bc: torch.Tensor


class Sampler:
    """Draws :class:`Batch` es in the domain [x_min, x_max] x [t_min, t_max].

    Boundary points are paired between x_min and x_max (see :class:`Batch`); an odd
    ``n_boundary`` is rounded down. All randomness comes from one
    ``torch.Generator`` (uniform) or Sobol engines seeded from it, so a seed fixes every draw;
    successive Sobol draws continue the sequence, so resampling gives new points.

    With ``rad=(k, c, oversample)``, a draw given the current residual (``sample(residual)``)
    picks its interior points among ``oversample * n_interior`` candidates of the same kind by
    residual-based adaptive distribution (:mod:`pinn.sampling.rad`); the choice uses the same
    generator, so it is seeded and resumable too.

    Args:
        kind: ``uniform`` or ``sobol``.
        n_interior, n_initial, n_boundary: points per set.
        domain: (x_min, x_max, t_min, t_max).
        dtype: floating dtype of the returned tensors.
        generator: source of randomness (a CPU generator: points are drawn on the CPU and
            then moved, so a seed gives the same points on every device).
        rad: (k, c, oversample) of RAD, or None for plain draws only.
        device: where the returned tensors live.
    """

    def __init__(self, kind: str, n_interior: int, n_initial: int, n_boundary: int,
                 domain: tuple, dtype: torch.dtype, generator: torch.Generator,
                 rad: Optional[Tuple[float, float, int]] = None,
                 device: Optional[torch.device] = None):
        if kind not in ("uniform", "sobol"):
            raise ValueError(f"sampler.kind={kind!r} is not allowed: one of uniform, sobol")
        self.kind = kind
        self.rad = rad
        self.n_interior, self.n_initial, self.n_boundary = n_interior, n_initial, n_boundary
        self.x_min, self.x_max, self.t_min, self.t_max = domain
        self.dtype = dtype
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.generator = generator
        if kind == "sobol":
            seeds = torch.randint(0, 2**31 - 1, (3,), generator=generator).tolist()
            self._engines = {
                "int": SobolEngine(2, scramble=True, seed=seeds[0]),
                "ic": SobolEngine(1, scramble=True, seed=seeds[1]),
                "bc": SobolEngine(1, scramble=True, seed=seeds[2]),
            }

    def _unit(self, which: str, n: int, dim: int) -> torch.Tensor:  # (n, dim) in [0, 1)
        if n == 0:
            return torch.zeros(0, dim, dtype=torch.float64)
        if self.kind == "sobol":
            return self._engines[which].draw(n, dtype=torch.float64)
        return torch.rand(n, dim, generator=self.generator, dtype=torch.float64)

    def _interior(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:  # (n, 1) each, float64
        u = self._unit("int", n, 2)
        return (self.x_min + (self.x_max - self.x_min) * u[:, :1],
                self.t_min + (self.t_max - self.t_min) * u[:, 1:])

    def sample(self, residual: Optional[Residual] = None) -> Batch:
        """A new draw; with ``residual`` and RAD configured, adaptive interior points.

        Args:
            residual: (x, t) in the run's dtype and device -> (M,) absolute residual of the
                current network, or None for a plain draw.
        """
        lx, lt = self.x_max - self.x_min, self.t_max - self.t_min
        if residual is not None and self.rad is not None:
            k, c, oversample = self.rad
            x_c, t_c = self._interior(oversample * self.n_interior)
            eps = residual(self._to(x_c), self._to(t_c))  # on the device
            idx = rad_select(eps.detach().cpu(), self.n_interior, k, c, self.generator)
            x_int, t_int = x_c[idx], t_c[idx]
        else:
            x_int, t_int = self._interior(self.n_interior)
        x_ic = self.x_min + lx * self._unit("ic", self.n_initial, 1)
        t_ic = torch.full_like(x_ic, self.t_min)
        t_half = self.t_min + lt * self._unit("bc", self.n_boundary // 2, 1)
        t_bc = torch.cat([t_half, t_half])
        x_bc = torch.cat([torch.full_like(t_half, self.x_min), torch.full_like(t_half, self.x_max)])
        to = self._to
        return Batch(to(x_int), to(t_int), to(x_ic), to(t_ic), to(x_bc), to(t_bc))

    def _to(self, v: torch.Tensor) -> torch.Tensor:  # float64 CPU draw -> run dtype and device
        return v.to(device=self.device, dtype=self.dtype)

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state()}
        if self.kind == "sobol":
            state["sobol_num_generated"] = {k: e.num_generated for k, e in self._engines.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if self.kind == "sobol":
            for k, n in state["sobol_num_generated"].items():
                self._engines[k].reset().fast_forward(n)
