"""From a batch of points to the weighted PINN loss."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from pinn.coords import Derivative
from pinn.fields import point_fields
from pinn.nn.norm import shared_batch_statistics
from pinn.pdes.problem import PDE
from pinn.pdes.unknowns import learned_values
from pinn.sampling import Batch

if TYPE_CHECKING:
    from pinn.attention import ResidualAttention
    from pinn.data import Observations

TERMS = ("res", "ic", "bc")


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


class CausalWeighting:
    """Causal weighting of the residual in time (Wang, Sankaran & Perdikaris, "Respecting
    causality for training physics-informed neural networks", CMAME 421, 116813, 2024, eqs.
    3.5-3.6): the interior points are binned into ``chunks`` equal time slices with mean
    squared residuals L_1..L_M, and the residual term is

        (1/M) sum_i w_i L_i,     w_i = exp(-eps sum_{k<i} L_k),

    the weights held constant (no gradient flows through them), so a slice counts only once
    the slices before it are resolved.

    The published method recomputes the weights at every gradient step (the Adam stage does).
    A quasi-Newton line search needs one fixed objective, so there the weights are held
    between redraws: :meth:`hold` fixes them from the current residuals, :meth:`release`
    (at every redraw) lets the next evaluation fix them again.
    """

    def __init__(self, eps: float, chunks: int, t_min: float, t_max: float):
        self.eps, self.chunks = float(eps), int(chunks)
        self.t_min, self.inv_span = float(t_min), 1.0 / (float(t_max) - float(t_min))
        self.held = False
        self._fixed: torch.Tensor | None = None
        self.last: torch.Tensor | None = None  # the weights of the last evaluation, (M,)
        # Sum over the ranks of a distributed run (pinn.distributed.all_sum), or None.
        self.reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def chunk_sums(self, res_sq: torch.Tensor, t: torch.Tensor):
        """Sum of ``res_sq`` (N,) over each time slice and the slices' point counts; (M,) each."""
        idx = ((t.reshape(-1).detach() - self.t_min) * self.inv_span * self.chunks).floor()
        idx = idx.clamp(0, self.chunks - 1).long()
        sums = res_sq.new_zeros(self.chunks).index_add(0, idx, res_sq)
        counts = torch.bincount(idx, minlength=self.chunks).to(res_sq.dtype)
        return sums, counts

    def chunk_losses(self, res_sq: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``res_sq`` (N,) over each time slice (an empty slice: 0); (M,)."""
        sums, counts = self.chunk_sums(res_sq, t)
        return sums / counts.clamp(min=1)

    def weights(self, chunk_losses: torch.Tensor) -> torch.Tensor:
        """w_i = exp(-eps sum_{k<i} L_k), detached; (M,)."""
        L = chunk_losses.detach()
        return torch.exp(-self.eps * (torch.cumsum(L, 0) - L))

    def residual_term(self, res_sq: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The causally weighted residual term of ``res_sq`` (N,) at times ``t`` (N, 1).

        With :attr:`reduce` set (several ranks, each holding a slice of the points), the slice
        losses and weights are those of the union of all ranks' points, and the returned
        value is this rank's contribution: the ranks' contributions sum to the term."""
        if self.reduce is None:
            L = self.chunk_losses(res_sq, t)
            local = L
        else:
            sums, counts = self.chunk_sums(res_sq, t)
            total = self.reduce(torch.cat([sums.detach(), counts]))  # (2M,) over all ranks
            counts_all = total[self.chunks:].clamp(min=1)
            L = total[:self.chunks] / counts_all
            local = sums / counts_all
        if self.held and self._fixed is not None:
            w = self._fixed
        else:
            w = self.weights(L)
            if self.held:
                self._fixed = w
        self.last = w
        return (w * local).mean()

    def residual_terms(self, res_sq: torch.Tensor, t: torch.Tensor) -> List[torch.Tensor]:
        """A system's causally weighted terms, one per equation (column of ``res_sq``, (N,
        n_eq)): the slice weights come from the equations' summed residuals, so that every
        equation waits for the same earlier times, and each term is (1/M) sum_i w_i L_i^(e).
        With :attr:`reduce`, this rank's contributions (see :meth:`residual_term`)."""
        n_eq = res_sq.shape[1]
        parts = [self.chunk_sums(res_sq[:, e], t) for e in range(n_eq)]
        sums = torch.stack([p[0] for p in parts])  # (n_eq, M)
        counts = parts[0][1]
        if self.reduce is not None:
            total = self.reduce(torch.cat([sums.detach().reshape(-1), counts]))
            counts = total[n_eq * self.chunks:]
            L = (total[: n_eq * self.chunks].reshape(n_eq, self.chunks)
                 / counts.clamp(min=1))
        else:
            L = sums.detach() / counts.clamp(min=1)
        local = sums / counts.clamp(min=1)
        if self.held and self._fixed is not None:
            w = self._fixed
        else:
            w = self.weights(L.sum(dim=0))
            if self.held:
                self._fixed = w
        self.last = w
        return [(w * local[e]).mean() for e in range(n_eq)]

    def hold(self) -> None:
        """From the next evaluation on, keep its weights until :meth:`release`."""
        self.held, self._fixed = True, None

    def release(self) -> None:
        """Weights fixed again at the next evaluation (held mode) or every one (otherwise)."""
        self._fixed = None

    def state_dict(self) -> dict:
        return {"held": self.held,
                "fixed": None if self._fixed is None else self._fixed.detach().cpu().tolist()}

    def load_state_dict(self, state: dict, like: torch.Tensor) -> None:
        self.held = bool(state.get("held", False))
        fixed = state.get("fixed")
        self._fixed = None if fixed is None else torch.tensor(fixed, dtype=like.dtype,
                                                               device=like.device)


def imposed_terms(model: nn.Module, pde: PDE) -> Tuple[str, ...]:
    """Loss terms that the network satisfies by construction and that are left out: ``ic``
    under a hard initial condition, ``bc`` under a hard (zero) Dirichlet boundary factor or for
    a periodic problem with a periodic embedding.
    (Their misfits are rounding errors; a gradient-norm balance would blow them up.)"""
    out = []
    transform = getattr(model, "output_transform", None)
    if transform is not None:
        out.extend(transform.imposes)
    embedding = getattr(model, "embedding", None)
    if (embedding is not None and embedding.periodic and pde.boundary_kind == "periodic"
            and "bc" not in out):
        out.append("bc")
    return tuple(out)


def loss_terms(model: nn.Module, pde: PDE, batch: Batch, engine: str = "autograd",
               compile: bool = False, causal: Optional[CausalWeighting] = None,
               data: Optional["Observations"] = None,
               shares: Optional[Mapping[str, float]] = None,
               attention: Optional["ResidualAttention"] = None) -> Dict[str, torch.Tensor]:
    """Mean squares of the residual (interior), initial and boundary misfits.

    The three point sets are evaluated under one set of batch statistics, those of the interior
    points, so that a batch-normalized network is one function within a step.

    Args:
        causal: weight the residual causally in time (:class:`CausalWeighting`), or None for
            the plain mean.
        data: observations (:class:`pinn.data.Observations`, on the network's device and
            dtype): adds the term ``data``, their (weighted) mean-square misfit.
        attention: residual-based attention (:class:`pinn.attention.ResidualAttention`): the
            residual at interior point i is multiplied by its multiplier lambda_i, taken (and,
            unless held, updated) from this evaluation's residuals.
        shares: on one rank of several (:mod:`pinn.distributed`), the share of each term's
            global point set that ``batch`` and ``data`` hold ({"res", "ic", "bc", "data"}):
            each term is then this rank's contribution, its mean times its share, so that the
            ranks' terms sum to the means over the global sets. None: the batch is the set.

    Returns:
        dict with scalar tensors ``res``, ``ic``, (when there are boundary points) ``bc`` and
        (with observations) ``data``; ``ic`` and ``bc`` left out where the network imposes them
        (:func:`imposed_terms`). The residual uses the learned coefficients of an inverse
        problem (``model.pde_params``).
    """
    eng = {"engine": engine, "compile": compile}
    imposed = imposed_terms(model, pde)
    with shared_batch_statistics(model):
        fields = point_fields(model, batch.interior, pde.wanted, **eng)
        res = pde.residual_at(batch.interior, fields, learned_values(model))  # (N, n_eq)
        if attention is not None:
            lam = attention.multipliers(res.detach().square().sum(dim=1).sqrt())
            res = res * lam[:, None]
        if pde.equations and causal is not None:  # one causally weighted term each
            parts = causal.residual_terms(res.square(), batch.interior[:, -1:])
            terms = {f"res_{name}": v for name, v in zip(pde.equations, parts)}
        elif pde.equations:  # a system with named equations: one term each
            terms = {f"res_{name}": res[:, i].square().mean()
                     for i, name in enumerate(pde.equations)}
        elif causal is None:
            terms = {"res": res.square().mean()}
        else:  # the mean over the equations, then causally weighted slices of time
            terms = {"res": causal.residual_term(res.square().mean(dim=1),
                                                 batch.interior[:, -1:])}
        if "ic" not in imposed and batch.initial.shape[0] > 0:
            terms["ic"] = _initial_misfit(model, pde, batch.initial, **eng).square().mean()
        if "bc" not in imposed and batch.boundary:
            pieces = _piece_misfits(model, pde, batch, **eng)
            if pieces is not None:
                terms["bc"] = pieces[0] / pieces[1].clamp(min=1)
        elif "bc" not in imposed:
            misfits = _boundary_misfits(model, pde, batch.faces, **eng)
            if misfits:
                terms["bc"] = torch.cat(misfits).square().mean()
        if data is not None:
            terms["data"] = data.misfit(_values(model, pde, data.points, **eng))
    if shares is not None:  # a causal term is a contribution already (CausalWeighting.reduce)
        terms = {k: v if (share_key(k) == "res" and causal is not None)
                 else v * shares[share_key(k)] for k, v in terms.items()}
    return terms


def share_key(term: str) -> str:
    """The point set a loss term is a mean over: ``res_<equation>`` -> ``res``."""
    return "res" if term.startswith("res_") else term


@torch.no_grad()
def residual_magnitude(model: nn.Module, pde: PDE, points: torch.Tensor,
                       engine: str = "autograd", compile: bool = False,
                       chunk: int = 65536) -> torch.Tensor:
    """|r| per point: the Euclidean norm of the residuals of all equations at ``points``
    (N, d); (N,).

    Evaluated in chunks of ``chunk`` points with the network as it is (call it in predict mode
    so that batch statistics stay untouched); no graph is kept.
    """
    parts = []
    for i in range(0, points.shape[0], chunk):
        p = points[i:i + chunk]
        f = point_fields(model, p, pde.wanted, create_graph=False, engine=engine,
                         compile=compile)
        parts.append(pde.residual_at(p, f, learned_values(model)).detach().square()
                     .sum(dim=1).sqrt())
    return torch.cat(parts)


def grad_norm_weights(model: nn.Module, terms: Mapping[str, torch.Tensor],
                      reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                      ) -> Dict[str, float]:
    """Weights that give every loss term the same parameter-gradient norm.

    w_i = sum_j |grad L_j| / |grad L_i| (Wang, Wang & Perdikaris, "An expert's guide to
    training physics-informed neural networks", 2023, eq. 5.2); a term with a zero gradient
    gets weight 1. One reverse pass per term; the graph of ``terms`` is kept. ``reduce``: the
    sum over the ranks of a distributed run, whose ``terms`` are this rank's contributions.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    norms = {}
    for k, v in terms.items():
        grads = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
        if reduce is not None:  # every rank: the same flat gradient, summed over the ranks
            flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                              for g, p in zip(grads, params)])
            grads = [reduce(flat)]
        norms[k] = float(torch.sqrt(sum(g.square().sum() for g in grads if g is not None)))
    total = sum(norms.values())
    return {k: total / n if n > 0 and math.isfinite(n) else 1.0 for k, n in norms.items()}


def weighted_total(terms: Mapping[str, torch.Tensor],
                   weights: Mapping[str, float]) -> torch.Tensor:
    """sum_k weights[k] * terms[k]; a term without a weight counts with weight 1."""
    return sum(float(weights.get(k, 1.0)) * v for k, v in terms.items())


def pinn_loss(model: nn.Module, pde: PDE, batch: Batch, weights: Mapping[str, float],
              **engine) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    terms = loss_terms(model, pde, batch, **engine)
    return weighted_total(terms, weights), terms
