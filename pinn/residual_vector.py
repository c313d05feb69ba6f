"""The loss as a sum of squares, and the Gauss-Newton normal equations of it.

Every loss term of :func:`pinn.losses.loss_terms` is a weighted mean of squared misfits, so
the total is ``||R||^2`` for the vector R that stacks each term's misfits r_k times
sqrt(w_k / n_k) (w_k the term's weight, n_k the number of values its mean is over): the
residual of every equation at the interior points, the initial misfits, the boundary misfits
(pairs of opposite face points on a box, masked misfits on a region's pieces) and the data
misfits. A :class:`Block` is one term's rows: a function of the network and the row tensors
(a point, a pair of points, a point with its normal and entry) that gives the misfits of those
rows, built from the same functions as the loss itself.

:func:`normal_equations` forms ``A = J'J`` and ``g = J'R`` with J = dR/dtheta, the Jacobian
in the trainable parameters, chunk by chunk so that memory stays bounded: per chunk of rows,
``vmap(jacrev(misfits of one row))`` (``torch.func``, with the input derivatives of
:mod:`pinn.derivatives_func`), about the cost of one reverse pass over the chunk.

Each row's misfits depend on its own points and the parameters alone: true for every network
here except batch normalization with batch statistics (``batch`` and ``detached`` modes, refused
by :func:`pinn.optim.gauss_newton.check_levenberg_marquardt`). Causal weighting is refused
there too (its slice weights couple the points).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from pinn.coords import Derivative
from pinn.fields import point_fields
from pinn.losses import imposed_terms, share_key
from pinn.misfits import (_boundary_misfits, _columns, _initial_misfit, piece_misfits,
                          piece_points, piece_values_per_point)
from pinn.pdes.problem import PDE
from pinn.pdes.unknowns import learned_values
from pinn.sampling import Batch

if TYPE_CHECKING:
    from pinn.data import Observations

ENGINE = {"engine": "func"}

# Rows x values x parameters of one chunk's Jacobian (float64: 8 bytes each; 2**25: 256 MiB).
CHUNK_NUMBERS = 2 ** 25


@dataclass
class Block:
    """One loss term's rows: ``misfits(model, *rows)`` maps row tensors with a leading
    dimension B to their misfits (B, K); ``rows`` hold every row (leading dimension n);
    ``scale`` = sqrt(weight / values the term's mean is over)."""

    term: str
    misfits: Callable[..., torch.Tensor]
    rows: Tuple[torch.Tensor, ...]
    scale: float

    @property
    def n(self) -> int:
        return self.rows[0].shape[0]


def _interior(pde: PDE, columns: Optional[List[int]] = None):
    def misfits(model: nn.Module, pts: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        fields = point_fields(model, pts, pde.wanted, **ENGINE)
        res = pde.residual_at(pts, fields, learned_values(model)) * lam[:, None]  # (B, n_eq)
        return res if columns is None else res[:, columns]
    return misfits


def _initial(pde: PDE):
    return lambda model, pts: _initial_misfit(model, pde, pts, **ENGINE)


def _face_pairs(pde: PDE, axis: int):
    """Misfits of the face conditions of space axis ``axis`` at pairs (B, 2, d) of points."""
    def misfits(model: nn.Module, pairs: torch.Tensor) -> torch.Tensor:
        b, d = pairs.shape[0], pairs.shape[2]
        faces = [pairs.new_zeros(0, d)] * len(pde.axes.space)
        faces[axis] = torch.cat([pairs[:, 0], pairs[:, 1]])  # lower rows, then upper
        return _boundary_misfits(model, pde, faces, **ENGINE)[0].reshape(b, -1)
    return misfits


def _piece(pde: PDE, j: int):
    def misfits(model, pts, normals, which) -> torch.Tensor:
        parts = piece_misfits(model, pde, j, pts, normals, which, **ENGINE)
        return torch.cat([r for r, _ in parts], dim=1)
    return misfits


def _data(pde: PDE, data: "Observations"):
    def misfits(model, pts, values, weights) -> torch.Tensor:
        values_at = [Derivative(k, (0,) * pde.axes.dim) for k in range(pde.n_out)]
        predicted = _columns(point_fields(model, pts, values_at, **ENGINE), values_at)
        return ((predicted[:, list(data.columns)] - values)
                * (weights / len(data.columns)).sqrt())
    return misfits


def blocks(model: nn.Module, pde: PDE, batch: Batch, weights: Mapping[str, float],
           data: Optional["Observations"] = None,
           shares: Optional[Mapping[str, float]] = None,
           attention: Optional[torch.Tensor] = None) -> List[Block]:
    """The blocks of R for the loss :func:`pinn.losses.loss_terms` gives on ``batch`` (the
    same terms, ``shares`` as there: on one rank of several, R is this rank's part, and the
    ranks' ``||R||^2`` sum to the loss). ``attention``: the interior points' multipliers (N,),
    held (:class:`pinn.attention.ResidualAttention`), or None."""
    def scale(term: str, count: float) -> float:
        share = 1.0 if shares is None else float(shares[share_key(term)])
        return math.sqrt(float(weights.get(term, 1.0)) * share / max(count, 1.0))

    out: List[Block] = []
    n = batch.interior.shape[0]
    lam = attention if attention is not None else batch.interior.new_ones(n)
    interior = (batch.interior, lam)
    if pde.equations:
        for e, name in enumerate(pde.equations):
            out.append(Block(f"res_{name}", _interior(pde, [e]), interior,
                             scale(f"res_{name}", n)))
    else:
        width = _width(_interior(pde), model, *interior)
        out.append(Block("res", _interior(pde), interior, scale("res", n * width)))
    imposed = imposed_terms(model, pde)
    if "ic" not in imposed and batch.initial.shape[0] > 0:
        k = _width(_initial(pde), model, batch.initial)
        out.append(Block("ic", _initial(pde), (batch.initial,),
                         scale("ic", batch.initial.shape[0] * k)))
    if "bc" not in imposed and batch.boundary:
        pieces = list(piece_points(pde, batch))
        hard = getattr(getattr(model, "output_transform", None), "imposes_dirichlet", False)
        count = float(sum(piece_values_per_point(pde, j, pts, hard).sum()
                          for j, pts, _, _ in pieces))
        for j, pts, normals, which in pieces:
            out.append(Block("bc", _piece(pde, j), (pts, normals, which), scale("bc", count)))
    elif "bc" not in imposed:
        pairs = []
        for i, pts in enumerate(batch.faces):
            m = pts.shape[0] // 2
            if m and (pde.axes.space[i] in pde.domain.periodic
                      or any(c.face.axis == i for c in pde.conditions)):
                pairs.append((i, torch.stack([pts[:m], pts[m:]], dim=1)))  # (m, 2, d)
        count = float(sum(_width(_face_pairs(pde, i), model, p) * p.shape[0]
                          for i, p in pairs))
        for i, p in pairs:
            out.append(Block("bc", _face_pairs(pde, i), (p,), scale("bc", count)))
    if data is not None:
        w = data.weights if data.weights is not None else data.values.new_ones(len(data), 1)
        out.append(Block("data", _data(pde, data), (data.points, data.values, w),
                         scale("data", len(data))))
    return out


def _width(misfits: Callable[..., torch.Tensor], model: nn.Module, *rows: torch.Tensor) -> int:
    """How many misfit values one row gives."""
    with torch.no_grad():
        return misfits(model, *(x[:1] for x in rows)).shape[1]


class _Apply(nn.Module):
    """``fn(model, *rows)`` as a module, so that ``functional_call`` swaps the parameters."""

    def __init__(self, model: nn.Module, fn: Callable[..., torch.Tensor]):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *rows):
        return self.fn(self.model, *rows)


def trainable(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The trainable parameters by name, in ``model.parameters()`` order (the flat order of
    the optimizers)."""
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def residual_vector(model: nn.Module, blocks_: List[Block]) -> torch.Tensor:
    """R, the blocks' scaled misfits one after the other (flat); no graph."""
    with torch.no_grad():
        return torch.cat([(b.misfits(model, *b.rows) * b.scale).reshape(-1) for b in blocks_])


def normal_equations(model: nn.Module, blocks_: List[Block],
                     chunk_numbers: int = CHUNK_NUMBERS
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, g, RR)``: A = J'J (P, P), g = J'R (P,) and RR = R'R (0-dim, the loss), with J the
    Jacobian of R in the trainable parameters (flat, :func:`trainable` order), formed over
    chunks of at most ``chunk_numbers`` Jacobian entries."""
    params = trainable(model)
    names = list(params)
    flat = {f"model.{k}": p.detach() for k, p in params.items()}
    P = sum(p.numel() for p in params.values())
    first = next(iter(params.values()))
    A = first.new_zeros(P, P)
    g = first.new_zeros(P)
    RR = first.new_zeros(())
    for b in blocks_:
        app = _Apply(model, b.misfits)

        def one(theta, *row, app=app, scale=b.scale):
            r = functional_call(app, theta, tuple(x[None] for x in row)).reshape(-1) * scale
            return r, r

        jac = vmap(jacrev(one, has_aux=True), in_dims=(None, *([0] * len(b.rows))))
        step = max(1, chunk_numbers // max(1, _width(b.misfits, model, *b.rows) * P))
        for s in range(0, b.n, step):
            J_parts, r = jac(flat, *(x[s:s + step] for x in b.rows))
            J = torch.cat([J_parts[f"model.{k}"].reshape(r.numel(), -1) for k in names], dim=1)
            r = r.reshape(-1).detach()
            A.addmm_(J.T, J)
            g.addmv_(J.T, r)
            RR += r @ r
    return A, g, RR


__all__ = ["Block", "blocks", "normal_equations", "residual_vector", "trainable"]
