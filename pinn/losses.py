"""From a batch of points to the weighted PINN loss."""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import torch
from torch import nn

from pinn.derivatives import compute_derivatives
from pinn.nn.norm import shared_batch_statistics
from pinn.pdes.base import PDE
from pinn.sampling import Batch

TERMS = ("res", "ic", "bc")


def loss_terms(model: nn.Module, pde: PDE, batch: Batch) -> Dict[str, torch.Tensor]:
    """Mean squares of the residual (interior), initial and boundary misfits.

    The three point sets are evaluated under one set of batch statistics, those of the interior
    points, so that a batch-normalized network is one function within a step.

    Returns:
        dict with scalar tensors ``res``, ``ic`` and (when there are boundary points) ``bc``.
    """
    with shared_batch_statistics(model):
        d = compute_derivatives(model, batch.x_int, batch.t_int, pde.derivatives)
        res = pde.residual(batch.x_int, batch.t_int, d)  # (N, n_res)
        terms = {"res": res.square().mean()}
        u_ic = model(torch.cat([batch.x_ic, batch.t_ic], dim=1))  # (N_ic, n_out)
        terms["ic"] = (u_ic - pde.initial(batch.x_ic)).square().mean()
        if batch.x_bc.shape[0] > 0:
            u_bc = model(torch.cat([batch.x_bc, batch.t_bc], dim=1))
            terms["bc"] = (u_bc - pde.boundary(batch.x_bc, batch.t_bc)).square().mean()
    return terms


def weighted_total(terms: Mapping[str, torch.Tensor],
                   weights: Mapping[str, float]) -> torch.Tensor:
    """sum_k weights[k] * terms[k]; a term without a weight counts with weight 1."""
    return sum(float(weights.get(k, 1.0)) * v for k, v in terms.items())


def pinn_loss(model: nn.Module, pde: PDE, batch: Batch,
              weights: Mapping[str, float]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    terms = loss_terms(model, pde, batch)
    return weighted_total(terms, weights), terms
