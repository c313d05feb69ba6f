"""From a batch of points to the weighted PINN loss."""
from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple

import torch
from torch import nn

from pinn.derivatives import compute_derivatives
from pinn.nn.norm import shared_batch_statistics
from pinn.pdes.problem import PDE
from pinn.sampling import Batch

TERMS = ("res", "ic", "bc")


def _initial_misfit(model: nn.Module, pde: PDE, x: torch.Tensor, t: torch.Tensor, **engine):
    """u - u0 at t_min, and u_t - v0 when the problem is second order in time: (N, k)."""
    v0 = pde.initial_velocity(x)
    if v0 is None:
        return model(torch.cat([x, t], dim=1)) - pde.initial(x)
    d = compute_derivatives(model, x, t, {"Ut"}, **engine)
    return torch.cat([d["U"] - pde.initial(x), d["Ut"] - v0], dim=1)


def _boundary_misfit(model: nn.Module, pde: PDE, x: torch.Tensor, t: torch.Tensor, **engine):
    """Dirichlet: u - g; Neumann: u_x - g; periodic: the differences of u and u_x between the
    two ends. x, t hold pairs (x_min rows, then x_max rows, same t); returns (M, k)."""
    n = x.shape[0] // 2
    if pde.boundary_kind == "dirichlet":
        u = model(torch.cat([x, t], dim=1))
        g = torch.cat([pde.boundary("left", t[:n]), pde.boundary("right", t[n:])])
        return u - g
    d = compute_derivatives(model, x, t, {"Ux"}, **engine)
    if pde.boundary_kind == "neumann":
        g = torch.cat([pde.boundary("left", t[:n]), pde.boundary("right", t[n:])])
        return d["Ux"] - g
    return torch.cat([d["U"][:n] - d["U"][n:], d["Ux"][:n] - d["Ux"][n:]], dim=1)


def loss_terms(model: nn.Module, pde: PDE, batch: Batch, engine: str = "autograd",
               compile: bool = False) -> Dict[str, torch.Tensor]:
    """Mean squares of the residual (interior), initial and boundary misfits.

    The three point sets are evaluated under one set of batch statistics, those of the interior
    points, so that a batch-normalized network is one function within a step.

    Returns:
        dict with scalar tensors ``res``, ``ic`` and (when there are boundary points) ``bc``.
    """
    eng = {"engine": engine, "compile": compile}
    with shared_batch_statistics(model):
        d = compute_derivatives(model, batch.x_int, batch.t_int, pde.derivatives, **eng)
        res = pde.residual(batch.x_int, batch.t_int, d)  # (N, n_equations)
        terms = {"res": res.square().mean()}
        terms["ic"] = _initial_misfit(model, pde, batch.x_ic, batch.t_ic, **eng).square().mean()
        if batch.x_bc.shape[0] >= 2:
            terms["bc"] = _boundary_misfit(model, pde, batch.x_bc, batch.t_bc,
                                           **eng).square().mean()
    return terms


@torch.no_grad()
def residual_magnitude(model: nn.Module, pde: PDE, x: torch.Tensor, t: torch.Tensor,
                       engine: str = "autograd", compile: bool = False,
                       chunk: int = 65536) -> torch.Tensor:
    """|r| per point: the Euclidean norm of the residuals of all equations, (N,).

    Evaluated in chunks of ``chunk`` points with the network as it is (call it in predict mode
    so that batch statistics stay untouched); no graph is kept.
    """
    parts = []
    for i in range(0, x.shape[0], chunk):
        xi, ti = x[i:i + chunk], t[i:i + chunk]
        d = compute_derivatives(model, xi, ti, pde.derivatives, create_graph=False,
                                engine=engine, compile=compile)
        parts.append(pde.residual(xi, ti, d).detach().square().sum(dim=1).sqrt())
    return torch.cat(parts)


def grad_norm_weights(model: nn.Module, terms: Mapping[str, torch.Tensor]) -> Dict[str, float]:
    """Weights that give every loss term the same parameter-gradient norm.

    w_i = sum_j |grad L_j| / |grad L_i| (Wang, Wang & Perdikaris, "An expert's guide to
    training physics-informed neural networks", 2023, eq. 5.2); a term with a zero gradient
    gets weight 1. One reverse pass per term; the graph of ``terms`` is kept.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    norms = {}
    for k, v in terms.items():
        grads = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
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
