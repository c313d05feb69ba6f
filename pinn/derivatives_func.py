"""Input derivatives of a network by ``torch.func`` (forward mode, point by point).

The other engines differentiate a whole batch at once (:mod:`pinn.derivatives_nd` sums each
field over the points before a reverse pass; :mod:`pinn.taylor` carries jets through written-out
autograd functions). Neither composes with ``torch.func``'s transforms, which a Gauss-Newton
method needs: the Jacobian of every per-point residual with respect to the parameters,
``vmap(jacrev(residual_of_one_point))``, costs about one reverse pass over the batch.

Here a point's derivatives of order k are the k-fold nested ``jacfwd`` of the network at that
point, a tensor (n_out, d, ..., d); ``vmap`` maps it over the points. Every function is pure, so
the result can be differentiated, vmapped and Jacobian-ed again in the parameters. The network
is called on one point at a time as a batch of one: batch normalization must use constant
statistics (``frozen``, or ``eval()``), as it must for any per-point derivative.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable

import torch
from torch.func import jacfwd, vmap

from pinn.coords import Derivative


def _axes_of(alpha) -> tuple:
    """The axes a multi-index differentiates along, one entry per differentiation:
    (2, 0, 1) -> (0, 0, 2)."""
    return tuple(a for a, n in enumerate(alpha) for _ in range(n))


def func_derivatives(model: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                     wanted: Iterable[Derivative]) -> Dict[Derivative, torch.Tensor]:
    """Each derivative of ``wanted`` at ``points`` (N, d), as an (N,) tensor.

    Only the orders the request holds are computed (the k-th by k nested ``jacfwd``)."""
    wanted = list(dict.fromkeys(wanted))
    if points.dim() != 2 or any(len(w.alpha) != points.shape[1] for w in wanted):
        raise ValueError(f"points must be (N, d) with d the length of every multi-index; got "
                         f"{tuple(points.shape)} and {sorted({len(w.alpha) for w in wanted})}")

    def value(z: torch.Tensor) -> torch.Tensor:  # (d,) -> (n_out,)
        return model(z[None])[0]

    nested = [value]
    for _ in range(max((w.order for w in wanted), default=0)):
        nested.append(jacfwd(nested[-1]))
    by_order = {k: vmap(nested[k])(points) for k in sorted({w.order for w in wanted})}
    return {w: by_order[w.order][(slice(None), w.output, *_axes_of(w.alpha))] for w in wanted}


__all__ = ["func_derivatives"]
