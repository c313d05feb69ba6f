"""What every problem provides: residual, domain, initial and boundary data, reference."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch


class PDE:
    """A problem on x in [x_min, x_max], t in [t_min, t_max] with Dirichlet boundaries.

    Subclasses set ``name``, ``outputs``, ``derivatives`` (the keys of
    :data:`pinn.derivatives.DERIVATIVE_KEYS` the residual reads), ``param_names`` and implement
    :meth:`residual`, :meth:`initial`, :meth:`boundary` and :meth:`reference`.
    """

    name: str = ""
    outputs: Sequence[str] = ("u",)
    derivatives: frozenset = frozenset()
    param_names: Sequence[str] = ()

    def __init__(self, x_min: float, x_max: float, t_min: float, t_max: float,
                 params: Mapping[str, float]):
        unknown = set(params) - set(self.param_names)
        missing = set(self.param_names) - set(params)
        if unknown or missing:
            raise ValueError(
                f"pde.params for {self.name!r} must be exactly {{{', '.join(self.param_names)}}}; "
                + (f"unknown: {', '.join(sorted(unknown))}" if unknown else "")
                + ("; " if unknown and missing else "")
                + (f"missing: {', '.join(sorted(missing))}" if missing else ""))
        self.x_min, self.x_max, self.t_min, self.t_max = x_min, x_max, t_min, t_max
        self.params: Dict[str, float] = {k: float(v) for k, v in params.items()}

    @property
    def n_out(self) -> int:
        return len(self.outputs)

    def residual(self, x: torch.Tensor, t: torch.Tensor,
                 d: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Residual at interior points: x, t (N, 1); d maps derivative keys to (N, n_out).
        Returns (N, n_residuals)."""
        raise NotImplementedError

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """u(x, t_min): x (N, 1) -> (N, n_out)."""
        raise NotImplementedError

    def boundary(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Dirichlet value at boundary points (x at x_min or x_max): (N, 1) each -> (N, n_out)."""
        raise NotImplementedError

    def reference(self, x: np.ndarray, t: np.ndarray) -> Optional[np.ndarray]:
        """Reference solution on the grid x (Nx,), t (Nt,): (Nt, Nx, n_out), or None if there is
        none."""
        return None
