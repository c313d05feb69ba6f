"""Hard initial and boundary conditions on points of any axes (a box in space, times time).

The output transform of problems beyond (x, t) (for (x, t), :class:`pinn.nn.embedding.
HardInitial`, which the Taylor engine differentiates in closed form):

    u = u0(s) [+ (t - t_min) v0(s)] + tau^p B(s) N(s, t)

with s the space coordinates, tau = (t - t_min) / (t_max - t_min), p = 1 (first order in
time) or 2 (second order: u_t(s, t_min) = v0), p = 0 without a hard initial condition, and

    B(s) = prod over the non-periodic space axes i of (s_i - a_i)(b_i - s_i) / (L_i / 2)^2

the boundary factor (u = 0 on every face of the box; Lagaris, Likas & Fotiadis, IEEE TNN 9,
1998; Sukumar & Srivastava, CMAME 389, 114333, 2022), 1 without a hard boundary condition.
N is the network. The transform is an ordinary differentiable map of the points, so the
reverse-mode engine (:func:`pinn.derivatives_nd.nd_derivatives`) differentiates through it;
the Taylor engine does not carry it (``taylor = False``) and the run says so.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn


class HardConstraint(nn.Module):
    """The transform above; see the module docstring.

    Args:
        initial: points (N, d) -> u0 (N, n_out) (only the space columns are read), or None.
        initial_velocity: points -> v0 for second order in time, or None.
        time: (column of t, t_min, t_max), or None for a steady problem (no initial value).
        boundary: (column, lower, upper) of each space axis whose two faces hold u = 0.
    """

    taylor = False  # the Taylor engine's reason to decline, see taylor_reason
    reason = ("the hard constraint beyond (x, t) is differentiated by autograd (the taylor "
              "engine carries the (x, t) transform only)")

    def __init__(self, initial: Optional[Callable[[Tensor], Tensor]],
                 initial_velocity: Optional[Callable[[Tensor], Tensor]],
                 time: Optional[Tuple[int, float, float]],
                 boundary: Sequence[Tuple[int, float, float]] = ()):
        super().__init__()
        if initial is not None and time is None:
            raise ValueError("a hard initial condition needs a time axis")
        self.initial = initial
        self.initial_velocity = initial_velocity if initial is not None else None
        self.time = None if time is None else (int(time[0]), float(time[1]), float(time[2]))
        self.power = 0 if initial is None else 2 if self.initial_velocity is not None else 1
        # (column, lower, upper, 1 / (L / 2)^2) per axis of the boundary factor
        self.boundary = tuple((int(i), float(a), float(b), 4.0 / (float(b) - float(a)) ** 2)
                              for i, a, b in boundary)

    @property
    def imposes(self) -> Tuple[str, ...]:
        """The loss terms this transform satisfies by construction: ``ic`` and/or ``bc``."""
        return (("ic",) if self.initial is not None else ()) + (
            ("bc",) if self.boundary else ())

    def factor(self, points: Tensor) -> Optional[Tensor]:
        """tau^p B(s) at ``points`` (N, d): (N, 1), or None where it is 1."""
        out = None
        if self.power:
            i, t_min, t_max = self.time
            out = ((points[:, i : i + 1] - t_min) / (t_max - t_min)) ** self.power
        for i, a, b, c in self.boundary:
            s = points[:, i : i + 1]
            B = c * (s - a) * (b - s)
            out = B if out is None else out * B
        return out

    def forward(self, points: Tensor, N: Tensor) -> Tensor:  # (N, d), (N, n_out) -> (N, n_out)
        F = self.factor(points)
        out = N if F is None else F * N
        if self.initial is not None:
            out = self.initial(points) + out
        if self.initial_velocity is not None:
            i, t_min, _ = self.time
            out = out + (points[:, i : i + 1] - t_min) * self.initial_velocity(points)
        return out


def build_hard_constraint(pde, hard_initial: bool, hard_boundary: bool,
                          rtol: float = 1e-12) -> HardConstraint:
    """The transform of ``model.hard_initial`` / ``model.hard_boundary`` for a problem beyond
    (x, t), after checking that it can hold.

    Raises:
        ValueError: one line naming the key: a hard initial condition on a steady problem; a
            hard boundary on a problem without non-periodic faces, with a face whose condition
            is not u = 0 on every output (Neumann, free, a nonzero value, an output left out),
            or whose initial value (or velocity) is not 0 on the faces.
    """
    axes, domain = pde.axes, pde.domain
    time = (axes.dim - 1, *domain.time) if axes.time else None  # t is the last column
    if hard_initial and time is None:
        raise ValueError(f"model.hard_initial=true imposes the initial condition; pde="
                         f"{pde.name} is steady (axes {', '.join(axes.names)}: no t): leave "
                         "it off")
    boundary = []
    if hard_boundary:
        boundary = [(axes.index(a), *domain.bounds(a)) for a in axes.space
                    if a not in domain.periodic]
        if not boundary:
            raise ValueError(f"model.hard_boundary=true imposes u = 0 on the faces; every space "
                             f"axis of pde={pde.name} is periodic")
        _check_zero_faces(pde, boundary, hard_initial, rtol)
    velocity = pde.initial_velocity_at if pde.initial_velocity_exprs else None
    return HardConstraint(pde.initial_at if hard_initial else None,
                          velocity if hard_initial else None, time, boundary)


def _face_points(pde, column: int, value: float, n: int = 64) -> Tensor:
    """``n`` quasi-random points of the box (time included) with column ``column`` = value."""
    lower = torch.tensor(pde.domain.lower, dtype=torch.float64)
    upper = torch.tensor(pde.domain.upper, dtype=torch.float64)
    unit = torch.quasirandom.SobolEngine(len(lower), scramble=True, seed=0).draw(
        n, dtype=torch.float64)
    p = lower + (upper - lower) * unit
    p[:, column] = value
    return p


def _check_zero_faces(pde, boundary, hard_initial: bool, rtol: float) -> None:
    key = "model.hard_boundary=true"
    held = {}
    for c in pde.conditions:
        held.setdefault(c.face.name, []).append(c)
    for column, a, b in boundary:
        for upper, value in ((False, a), (True, b)):
            face = next(f for f in pde.domain.faces.values()
                        if f.axis == column and f.upper == upper)
            label = pde.domain.display(face)
            dirichlet = [c for c in held.get(face.name, []) if c.kind == "dirichlet"]
            covered = sorted({k for c in dirichlet for k in c.outputs})
            if covered != list(range(pde.n_out)):
                missing = [pde.outputs[k] for k in range(pde.n_out) if k not in covered]
                raise ValueError(f"{key} imposes u = 0 on every face; face {label} of pde="
                                 f"{pde.name} has no Dirichlet condition on "
                                 f"{', '.join(missing)}")
            points = _face_points(pde, column, value)
            for c in dirichlet:
                g = pde.condition_values(c, points)
                if float(g.abs().max()) > rtol:
                    raise ValueError(f"{key} imposes u = 0 on every face; the condition on "
                                     f"face {label} of pde={pde.name} is not 0 (max |value| "
                                     f"{float(g.abs().max()):.3g})")
            if hard_initial:
                for name, fn in (("pde.initial", pde.initial_at),
                                 ("pde.initial_velocity", pde.initial_velocity_at)):
                    g = fn(points)
                    if g is not None and float(g.abs().max()) > rtol:
                        raise ValueError(f"{key} with model.hard_initial=true: {name} is not 0 "
                                         f"on face {label} (max |value| "
                                         f"{float(g.abs().max()):.3g}), so u could not be 0 "
                                         "there at t = t_min")


__all__ = ["HardConstraint", "build_hard_constraint"]
