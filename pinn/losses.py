"""From a batch of points to the weighted PINN loss."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from pinn.causal import CausalWeighting
from pinn.fields import point_fields
from pinn.misfits import _boundary_misfits, _initial_misfit, _piece_misfits, _values
from pinn.nn.norm import shared_batch_statistics
from pinn.pdes.problem import PDE
from pinn.pdes.unknowns import learned_values
from pinn.sampling import Batch

if TYPE_CHECKING:
    from pinn.attention import ResidualAttention
    from pinn.data import Observations

TERMS = ("res", "ic", "bc")


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
