"""Viscous Burgers: u_t + u u_x = nu u_xx (Raissi et al.'s benchmark)."""
from __future__ import annotations

import math

import numpy as np
import torch

from pinn.pdes.base import PDE
from pinn.reference.burgers import burgers_cole_hopf


class BurgersPDE(PDE):
    """u_t + u u_x - nu u_xx = 0, u(x, 0) = -sin(pi x), u(+-1, t) = 0 on x in [-1, 1].

    The reference is the Cole-Hopf solution, which assumes this initial condition on
    [-1, 1]: other domains are refused.
    """

    name = "burgers"
    derivatives = frozenset({"U", "Ux", "Ut", "Uxx"})
    param_names = ("nu",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if (self.x_min, self.x_max) != (-1.0, 1.0):
            raise ValueError(f"pde.x_min/x_max={self.x_min}/{self.x_max} is not allowed for "
                             "burgers: -1/1 (the initial and boundary data are set there)")
        if self.params["nu"] <= 0:
            raise ValueError(f"pde.params.nu={self.params['nu']} is not allowed: a number > 0")

    def residual(self, x, t, d):
        return d["Ut"] + d["U"] * d["Ux"] - self.params["nu"] * d["Uxx"]

    def initial(self, x):
        return -torch.sin(math.pi * x)

    def boundary(self, x, t):
        return torch.zeros_like(x)

    def reference(self, x, t):
        u = burgers_cole_hopf(np.asarray(x, float), np.asarray(t, float) - self.t_min,
                              self.params["nu"])
        return u[:, :, None]  # (Nt, Nx, 1)
