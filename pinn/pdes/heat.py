"""Heat equation with a closed-form solution."""
from __future__ import annotations

import math

import numpy as np
import torch

from pinn.pdes.base import PDE


class HeatPDE(PDE):
    """u_t = kappa u_xx, u(x, t_min) = sin(k pi s), s = (x - x_min) / L, u = 0 at both ends.

    Exact solution: u = sin(k pi s) exp(-kappa (k pi / L)^2 (t - t_min)), L = x_max - x_min;
    ``k`` must be a positive integer for the boundary values to vanish.
    """

    name = "heat"
    derivatives = frozenset({"U", "Ut", "Uxx"})
    param_names = ("kappa", "k")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        k = self.params["k"]
        if k < 1 or k != int(k):
            raise ValueError(f"pde.params.k={k} is not allowed: a positive integer")
        if self.params["kappa"] <= 0:
            raise ValueError(f"pde.params.kappa={self.params['kappa']} is not allowed: a number > 0")
        self.wavenumber = k * math.pi / (self.x_max - self.x_min)
        self.decay = self.params["kappa"] * self.wavenumber**2

    def residual(self, x, t, d):
        return d["Ut"] - self.params["kappa"] * d["Uxx"]

    def initial(self, x):
        return torch.sin(self.wavenumber * (x - self.x_min))

    def boundary(self, x, t):
        return torch.zeros_like(x)

    def exact(self, x, t):
        """Closed form for numpy arrays or tensors of equal shape."""
        lib = torch if isinstance(x, torch.Tensor) else np
        return lib.sin(self.wavenumber * (x - self.x_min)) * lib.exp(-self.decay * (t - self.t_min))

    def reference(self, x, t):
        X, T = np.meshgrid(np.asarray(x, float), np.asarray(t, float))  # (Nt, Nx)
        return self.exact(X, T)[:, :, None]
