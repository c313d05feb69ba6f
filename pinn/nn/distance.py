"""Hard Dirichlet conditions on a region of shapes by approximate distance functions
(Sukumar & Srivastava, "Exact imposition of boundary conditions with distance functions in
physics-informed deep neural networks", CMAME 389 (2022) 114333):

    u_o = g_o + phi_o N_o

for each output o with Dirichlet conditions: phi_o is the R-equivalence (m = 2) of the
normalized distances phi_i to its Dirichlet pieces (zero exactly there, positive inside), and
g_o = sum_i w_i g_i the transfinite interpolation of their values, w_i = prod_{j != i}
phi_j^2 / sum_k prod_{j != k} phi_j^2 (w_i = 1 on piece i). N is the network. Neumann and Robin
conditions stay in the loss. The transform is differentiated by autograd (``taylor = False``).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch.quasirandom import SobolEngine

from pinn.geometry.shapes import r_equivalence


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

    def __init__(self, pde, by_output: Dict[int, List[Tuple[int, object]]], imposes_all: bool):
        super().__init__()
        self.pde = pde
        self.by_output = by_output
        self.imposes_all = imposes_all

    @property
    def imposes(self) -> Tuple[str, ...]:
        return ("bc",) if self.imposes_all else ()

    def _distance(self, j: int, space: Tensor) -> Tensor:
        rp = self.pde.region.pieces[j]
        phi = rp.piece.distance(space)
        return -phi if (rp.flip and rp.piece.signed) else phi

    def forward(self, points: Tensor, N: Tensor) -> Tensor:  # (N, d), (N, n_out)
        space = points[:, : self.pde.region.k]
        cols = []
        for o in range(N.shape[1]):
            pieces = self.by_output.get(o)
            if not pieces:
                cols.append(N[:, o : o + 1])
                continue
            phis = [self._distance(j, space) for j, _ in pieces]
            values = [self.pde.expressions_at([e], points)[:, 0] for _, e in pieces]
            if len(phis) == 1:
                g = values[0]
            else:
                others = []
                for k in range(len(phis)):
                    prod = None
                    for j, v in enumerate(phis):
                        if j != k:
                            prod = v * v if prod is None else prod * v * v
                    others.append(prod)
                total = sum(others)
                # At a corner of two Dirichlet pieces every product vanishes: there g is the
                # mean of the pieces' values (their common value where the data is continuous).
                corner = total == 0
                mean = sum(values) / len(values)
                g = torch.where(corner, mean, sum(w * v for w, v in zip(others, values))
                                / torch.where(corner, torch.ones_like(total), total))
            phi = r_equivalence(phis)
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
    if hard_initial:
        raise ValueError(f"{key} with model.hard_initial=true: on shapes (pde.geometry) the two "
                         "are not combined yet; keep the initial condition in the loss")
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
    constraint = DistanceConstraint(pde, by_output, imposes_all=not soft)
    _check_positive_inside(constraint, key)
    return constraint


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
