"""Hard Dirichlet conditions on a region of shapes by approximate distance functions
(Sukumar & Srivastava, "Exact imposition of boundary conditions with distance functions in
physics-informed deep neural networks", CMAME 389 (2022) 114333):

    u_o = g_o + phi_o N_o

for each output o with Dirichlet conditions: phi_o is the R-equivalence (m = 2) of the
normalized distances phi_i to its Dirichlet pieces (zero exactly there, positive inside), and
g_o = sum_i w_i g_i the transfinite interpolation of their values, w_i = prod_{j != i}
phi_j^2 / sum_k prod_{j != k} phi_j^2 (w_i = 1 on piece i). N is the network. Neumann and Robin
conditions stay in the loss. With ``model.hard_initial=true`` too (first order in time),

    u_o = u0_o + (g_o - g_o|t=t_min) + tau phi_o N_o,    tau = (t - t_min) / (t_max - t_min),

which is u0 at t_min and g_i on piece i where the data are compatible (u0 = g_i there at
t_min, checked); an output without Dirichlet pieces is u0_o + tau N_o. The transform is
differentiated by autograd (``taylor = False``).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch.quasirandom import SobolEngine

from pinn.geometry.shapes import products_of_others, r_equivalence


class DistanceConstraint(nn.Module):
    """The transform above.

    Args:
        pde: the problem (its region, conditions and parameters).
        by_output: output column -> [(piece index, value expression)] of its Dirichlet pieces.
    """

    taylor = False
    imposes_dirichlet = True  # every Dirichlet condition holds exactly: the loss skips them
    reason = ("the hard boundary condition on shapes (approximate distance functions) is "
              "differentiated by autograd")

    def __init__(self, pde, by_output: Dict[int, List[Tuple[int, object]]], imposes_all: bool,
                 hard_initial: bool = False):
        super().__init__()
        self.pde = pde
        self.by_output = by_output
        self.imposes_all = imposes_all
        self.hard_initial = hard_initial
        if hard_initial:
            self.t_min, self.t_max = (float(v) for v in pde.domain.time)

    @property
    def imposes(self) -> Tuple[str, ...]:
        return (("ic",) if self.hard_initial else ()) + (("bc",) if self.imposes_all else ())

    def _distance(self, j: int, space: Tensor) -> Tensor:
        rp = self.pde.region.pieces[j]
        phi = rp.piece.distance(space)
        return -phi if (rp.flip and rp.piece.signed) else phi

    @staticmethod
    def _interpolate(phis: List[Tensor], values: List[Tensor]) -> Tensor:
        """The transfinite interpolation g = sum_i w_i g_i of the pieces' values."""
        if len(phis) == 1:
            return values[0]
        others = [o * o for o in products_of_others(phis)]  # prod_{j != k} phi_j^2
        total = sum(others)
        # At a corner of two Dirichlet pieces every product vanishes: there g is the mean of
        # the pieces' values (their common value where the data is continuous).
        corner = total == 0
        mean = sum(values) / len(values)
        return torch.where(corner, mean, sum(w * v for w, v in zip(others, values))
                           / torch.where(corner, torch.ones_like(total), total))

    def forward(self, points: Tensor, N: Tensor) -> Tensor:  # (N, d), (N, n_out)
        space = points[:, : self.pde.region.k]
        if self.hard_initial:  # u0 + (g - g at t_min) + tau phi N (module doc)
            tau = (points[:, -1] - self.t_min) / (self.t_max - self.t_min)
            start = points.clone()
            start[:, -1] = self.t_min
            u0 = self.pde.initial_at(points)
        cols = []
        for o in range(N.shape[1]):
            pieces = self.by_output.get(o)
            free = N[:, o] if not self.hard_initial else u0[:, o] + tau * N[:, o]
            if not pieces:
                cols.append(free[:, None])
                continue
            phis = [self._distance(j, space) for j, _ in pieces]
            g = self._interpolate(phis, [self.pde.expressions_at([e], points)[:, 0]
                                         for _, e in pieces])
            phi = r_equivalence(phis)
            if self.hard_initial:
                g0 = self._interpolate(phis, [self.pde.expressions_at([e], start)[:, 0]
                                              for _, e in pieces])
                cols.append((u0[:, o] + g - g0 + tau * phi * N[:, o])[:, None])
            else:
                cols.append((g + phi * N[:, o])[:, None])
        return torch.cat(cols, dim=1)


def build_distance_constraint(pde, hard_initial: bool) -> DistanceConstraint:
    """The transform of ``model.hard_boundary=true`` on a region of shapes.

    Raises:
        ValueError: one line naming the key: with ``model.hard_initial`` too, a Dirichlet
            condition chosen by ``where`` or sharing its piece with one, a piece whose part off
            the boundary lies inside the domain, a distance that vanishes inside the domain,
            or no Dirichlet condition at all.
    """
    key = "model.hard_boundary=true"
    region = pde.region
    if hard_initial and not pde.axes.time:
        raise ValueError(f"model.hard_initial=true imposes the initial condition; pde="
                         f"{pde.name} is steady (no t): leave it off")
    if hard_initial and pde.initial_velocity_exprs:
        raise ValueError(f"{key} with model.hard_initial=true on shapes (pde.geometry) is "
                         f"first order in time; pde={pde.name} has an initial velocity: keep "
                         "the initial conditions in the loss")
    if not region.exact:
        raise ValueError(f"{key}: distance functions need shapes; pde={pde.name} is a domain "
                         "from point files (the loss holds its conditions)")
    by_output: Dict[int, List[Tuple[int, object]]] = {}
    soft = False
    with_where = {j for e in pde.entries if e.where is not None for j in e.pieces}
    for e in pde.entries:
        for c in e.conditions:
            if c.kind != "dirichlet":
                soft = True
                continue
            if e.where is not None or with_where & set(e.pieces):
                raise ValueError(f"{key} imposes Dirichlet conditions on whole pieces; "
                                 f"pde.conditions.{e.label} shares its points with a where "
                                 "condition")
            for j in e.pieces:
                _check_whole(region, j, key)
                for o, v in zip(c.outputs, c.values):
                    by_output.setdefault(o, []).append((j, v))
    if not by_output:
        raise ValueError(f"{key}: pde={pde.name} has no Dirichlet condition to impose")
    constraint = DistanceConstraint(pde, by_output, imposes_all=not soft,
                                    hard_initial=hard_initial)
    _check_positive_inside(constraint, key)
    if hard_initial:
        _check_compatible(pde, by_output, key)
    return constraint


def _check_compatible(pde, by_output, key: str, rtol: float = 1e-10) -> None:
    """With a hard initial condition too, the initial value must equal each Dirichlet value
    on its piece at t = t_min (else no function holds both)."""
    region = pde.region
    engine = SobolEngine(region.k - 1, scramble=True, seed=0)
    unit = engine.draw(512, dtype=torch.float64)
    t_min = float(pde.domain.time[0])
    for o, pieces in sorted(by_output.items()):
        for j, expr in pieces:
            rp = region.pieces[j]
            p, n = rp.piece.draw(unit)
            p = p[region._keep(p, -n if rp.flip else n)]
            pts = torch.cat([p, torch.full((p.shape[0], 1), t_min, dtype=p.dtype)], 1)
            u0 = pde.initial_at(pts)[:, o]
            g = pde.expressions_at([expr], pts)[:, 0]
            gap = float((u0 - g).abs().max()) if p.shape[0] else 0.0
            if gap > rtol * max(1.0, float(g.abs().max()) if p.shape[0] else 1.0):
                raise ValueError(f"{key} with model.hard_initial=true: the initial value of "
                                 f"{pde.outputs[o]} and its Dirichlet value on {rp.name} differ "
                                 f"at t = {t_min:g} (by up to {gap:.3g}); no function holds "
                                 "both: keep one of them in the loss")


def _check_positive_inside(constraint: DistanceConstraint, key: str) -> None:
    """Every Dirichlet piece's distance is > 0 at 4,096 quasi-random points inside the domain:
    a distance whose zero set (a plane, a trimming disk) reaches into the domain would pin the
    output there."""
    region = constraint.pde.region
    engine = SobolEngine(region.k, scramble=True, seed=0)
    inside = region.interior_space(4096, lambda m: engine.draw(m, dtype=torch.float64))
    for j in sorted({j for pieces in constraint.by_output.values() for j, _ in pieces}):
        phi = constraint._distance(j, inside)
        if not bool((phi > 0).all()):
            raise ValueError(f"{key}: the distance function of the piece "
                             f"{region.pieces[j].name} vanishes or changes sign inside the "
                             "domain (another shape's boundary lies in its zero set); keep "
                             "the conditions in the loss")


def _check_whole(region, j: int, key: str) -> None:
    """The distance to a piece vanishes on the whole primitive piece: the part that is not on
    the domain's boundary must lie outside the domain."""
    rp = region.pieces[j]
    if rp.fraction >= 1.0:
        return
    if region.k == 2:
        u = (torch.arange(2048, dtype=torch.float64)[:, None] + 0.5) / 2048
    else:
        u = SobolEngine(region.k - 1, scramble=True, seed=0).draw(4096, dtype=torch.float64)
    p, n = rp.piece.draw(u)
    n = -n if rp.flip else n
    off = ~region._keep(p, n)
    if bool((region.level(p[off]) < -region.h).any()):
        raise ValueError(f"{key}: part of the piece {rp.name} lies inside the domain (another "
                         "shape covers it), where its distance function would vanish")


__all__ = ["DistanceConstraint", "build_distance_constraint"]
