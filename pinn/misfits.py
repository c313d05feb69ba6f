"""The misfits a loss is made of, point by point: the network's values at points, the initial
misfit, the misfits of the conditions on a box's faces and on a region's pieces, and how many
values each gives (a rank's share of them under torchrun).

:mod:`pinn.losses` reduces them to mean squares; :mod:`pinn.residual_vector` stacks them into
the residual vector of the Gauss-Newton normal equations.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from pinn.coords import Derivative
from pinn.fields import point_fields
from pinn.pdes.problem import PDE
from pinn.sampling import Batch


def _columns(fields: Mapping[Derivative, torch.Tensor], wanted: Sequence[Derivative]):
    """The (N, 1) fields of ``wanted`` side by side: (N, len(wanted))."""
    return torch.cat([fields[w] for w in wanted], dim=1)


def _values(model: nn.Module, pde: PDE, points: torch.Tensor, **engine) -> torch.Tensor:
    """The network's outputs at ``points`` (N, d) by the run's engine: (N, n_out)."""
    values = [Derivative(k, (0,) * pde.axes.dim) for k in range(pde.n_out)]
    return _columns(point_fields(model, points, values, **engine), values)


def _initial_misfit(model: nn.Module, pde: PDE, points: torch.Tensor, **engine) -> torch.Tensor:
    """u - u0 at t_min, and u_t - v0 when the problem is second order in time: (N, k)."""
    v0 = pde.initial_velocity_at(points)
    if v0 is None:
        return model(points) - pde.initial_at(points)
    t = pde.axes.dim - 1
    values = [Derivative(k, (0,) * pde.axes.dim) for k in range(pde.n_out)]
    rates = [Derivative(k, tuple(int(i == t) for i in range(pde.axes.dim)))
             for k in range(pde.n_out)]
    f = point_fields(model, points, values + rates, **engine)
    return torch.cat([_columns(f, values) - pde.initial_at(points), _columns(f, rates) - v0],
                     dim=1)


def boundary_values_per_pair(pde: PDE) -> Tuple[int, ...]:
    """How many misfit values :func:`_boundary_misfits` gives per pair of boundary points, by
    space axis (2 n_out on a periodic axis; the conditioned outputs of its two faces otherwise):
    a rank's share of the ``bc`` term is its share of these values (see
    :func:`pinn.distributed.shard_batch`)."""
    out = []
    for i, axis in enumerate(pde.axes.space):
        if axis in pde.domain.periodic:
            out.append(2 * pde.n_out)
        else:
            out.append(sum(len(c.outputs) for c in pde.conditions if c.face.axis == i))
    return tuple(out)


def _boundary_misfits(model: nn.Module, pde: PDE, faces: Sequence[torch.Tensor],
                      **engine) -> List[torch.Tensor]:
    """The misfits of the face conditions, one flattened tensor per space axis.

    ``faces[i]`` holds the points of the two faces of space axis i in pairs (rows [:m] on the
    lower face, [m:] on the upper, see :class:`pinn.sampling.Batch`). Dirichlet: u - g;
    Neumann: du/dn - g (the 1-D ``neumann``: u_x - g); a periodic axis: the differences of every
    output and its derivative along the axis between the two faces."""
    out = []
    d = pde.axes.dim
    for i, pts in enumerate(faces):
        m = pts.shape[0] // 2
        periodic = pde.axes.space[i] in pde.domain.periodic
        conds = [c for c in pde.conditions if c.face.axis == i]
        if m == 0 or not (periodic or conds):
            continue
        values = [Derivative(k, (0,) * d) for k in range(pde.n_out)]
        along = [Derivative(k, tuple(int(j == i) for j in range(d))) for k in range(pde.n_out)]
        if periodic or any(c.kind == "neumann" for c in conds):
            f = point_fields(model, pts, values + along, **engine)
            U, dU = _columns(f, values), _columns(f, along)  # (2m, n_out) each
        else:
            U, dU = model(pts), None
        if periodic:
            out.append(torch.cat([U[:m] - U[m:], dU[:m] - dU[m:]], dim=1).reshape(-1))
            continue
        parts = []
        for c in conds:
            rows = slice(m, None) if c.face.upper else slice(None, m)
            g = pde.condition_values(c, pts[rows])
            if c.kind == "dirichlet":
                got = U[rows] if len(c.outputs) == pde.n_out else U[rows][:, list(c.outputs)]
            else:
                got = dU[rows] if len(c.outputs) == pde.n_out else dU[rows][:, list(c.outputs)]
                got = got if c.sign == 1.0 else c.sign * got
            parts.append(got - g)
        # Faces in the order lower, upper: the rows of the 1-D pairs as they were drawn.
        order = sorted(range(len(parts)), key=lambda j: conds[j].face.upper)
        out.append(torch.cat([parts[j].reshape(-1) for j in order]))
    return out


def _piece_misfits(model: nn.Module, pde: PDE, batch: Batch,
                   **engine) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The squared misfits of the conditions on a region's pieces, summed, and how many values
    they are: (sum, count), 0-dim tensors; None when no point is conditioned
    (:func:`piece_misfits` gives the misfits themselves)."""
    total, count = None, None
    for j, pts, normals, which in piece_points(pde, batch):
        for r, n in piece_misfits(model, pde, j, pts, normals, which, **engine):
            sq = r.square().sum()
            total = sq if total is None else total + sq
            count = n if count is None else count + n
    return None if total is None else (total, count)


def piece_points(pde: PDE, batch: Batch):
    """The conditioned pieces of a batch: (piece index, points (m, d), normals (m, k), the
    entry of each point (m,), :func:`pinn.pdes.boundary.assign`) for each piece with points
    and an entry that conditions it."""
    from pinn.pdes.boundary import assign

    for j, (pts, normals) in enumerate(zip(batch.boundary, batch.normals)):
        if pts.shape[0] == 0 or not any(j in e.pieces and e.conditions for e in pde.entries):
            continue
        env = {**pde.params, **pde.columns(pts)}
        yield j, pts, normals, assign(pde.entries, pde.region, j, pts, env)


def piece_misfits(model: nn.Module, pde: PDE, j: int, pts: torch.Tensor,
                  normals: torch.Tensor, which: torch.Tensor,
                  **engine) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The misfits of the conditions on piece ``j`` at its points ``pts`` (m, d) with outward
    normals (m, k) and entries ``which`` (m,): per condition, the misfits (m, outputs), zero
    at the points of other entries, and how many values they count (0-dim).

    Each boundary point takes the conditions of its entry; Dirichlet: u - g, Neumann:
    du/dn - g, Robin: a u + b du/dn - g, with n the region's exact outward normal and
    du/dn = sum_i n_i du/dx_i. Masks keep the shapes fixed from draw to draw (and the
    function pure, for :mod:`pinn.residual_vector`)."""
    d, k = pde.axes.dim, pde.region.k
    # Under distance functions (pinn.nn.distance) every Dirichlet condition holds exactly.
    hard = getattr(getattr(model, "output_transform", None), "imposes_dirichlet", False)
    entries = [(i, e) for i, e in enumerate(pde.entries) if j in e.pieces and e.conditions]
    values = [Derivative(o, (0,) * d) for o in range(pde.n_out)]
    grads = [[Derivative(o, tuple(int(a == i) for a in range(d))) for o in range(pde.n_out)]
             for i in range(k)]
    if any(e.needs_gradient for _, e in entries):
        f = point_fields(model, pts, values + [g for row in grads for g in row], **engine)
        U = _columns(f, values)
        dUdn = sum(normals[:, i:i + 1] * _columns(f, grads[i]) for i in range(k))
    else:
        U, dUdn = model(pts), None
    out = []
    for i, e in entries:
        mask = (which == i).to(pts.dtype)[:, None]  # (m, 1)
        for c in e.conditions:
            if hard and c.kind == "dirichlet":
                continue
            g = pde.condition_values(c, pts)
            cols = list(c.outputs)
            if c.kind == "dirichlet":
                r = U[:, cols] - g
            elif c.kind == "neumann":
                r = dUdn[:, cols] - g
            else:
                r = (pde.expressions_at(c.a, pts) * U[:, cols]
                     + pde.expressions_at(c.b, pts) * dUdn[:, cols] - g)
            out.append((mask * r, mask.sum() * len(cols)))
    return out


def piece_values_per_point(pde: PDE, piece: int, points: torch.Tensor,
                           hard: bool = False) -> torch.Tensor:
    """How many misfit values each point (N, d) of a region's ``piece`` gives (the outputs its
    entry conditions; 0 where free; Dirichlet conditions not counted when ``hard``, imposed by
    distance functions): (N,). A rank's share of the ``bc`` term is its share of these
    values."""
    from pinn.pdes.boundary import assign

    env = {**pde.params, **pde.columns(points)}
    which = assign(pde.entries, pde.region, piece, points, env)
    per_entry = torch.tensor([sum(len(c.outputs) for c in e.conditions
                                  if not (hard and c.kind == "dirichlet"))
                              for e in pde.entries]
                             + [0], dtype=torch.float64, device=points.device)
    return per_entry[which]  # -1 (uncovered) reads the trailing 0
