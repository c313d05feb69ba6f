"""Input derivatives of a network on points of any dimension, by reverse-mode autograd: the
reference that every faster engine is checked against.

A request is a set of :class:`pinn.coords.Derivative` (an output and a multi-index). Each output
column is differentiated along the path :func:`pinn.coords.closure` lays out: one reverse pass
of a field gives its partials along *every* axis at once, so ``u_xx``, ``u_xy`` and ``u_xt``
all come from the single pass of ``u_x``, and nothing the request does not lead to is computed.

As in :mod:`pinn.derivatives`, summing a field over the points before differentiating gives
per-point derivatives only when each output row depends on its own input row alone: true for
every network here except batch normalization in ``batch`` mode while training.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Sequence

import torch

from pinn.coords import Axes, Derivative, MultiIndex, closure, parse_key, predecessor


def nd_derivatives(model: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                   wanted: Iterable[Derivative],
                   create_graph: bool = True) -> Dict[Derivative, torch.Tensor]:
    """The network's values and the input derivatives in ``wanted`` at ``points``.

    Args:
        model: maps (N, d) points to (N, n_out) values.
        points: (N, d), the axes' columns in order.
        wanted: derivatives to return (values are requested with a zero multi-index).
        create_graph: keep the graph so that a loss built from the result can be
            differentiated with respect to the parameters (training); ``False`` for evaluation.

    Returns:
        each wanted derivative -> (N,) tensor.
    """
    wanted = list(dict.fromkeys(wanted))
    d = points.shape[1] if points.dim() == 2 else -1
    if points.dim() != 2 or any(len(w.alpha) != d for w in wanted):
        raise ValueError(f"points must be (N, d) with d the length of every multi-index; got "
                         f"{tuple(points.shape)} and {sorted({len(w.alpha) for w in wanted})}")
    differentiated = any(w.order > 0 for w in wanted)
    if differentiated and not points.requires_grad:
        points = points.detach().requires_grad_(True)
    out: Dict[Derivative, torch.Tensor] = {}
    # Values alone keep their graph too when asked to (a data term trains on them).
    with torch.enable_grad() if differentiated or create_graph else torch.no_grad():
        values = model(points)  # (N, n_out)
        for k in sorted({w.output for w in wanted}):
            alphas = [w.alpha for w in wanted if w.output == k]
            fields = _fields_of_output(values[:, k], points, alphas, create_graph)
            for a in alphas:
                field = fields[a]
                out[Derivative(k, a)] = field if create_graph else field.detach()
    return {w: out[w] for w in wanted}


def _fields_of_output(value: torch.Tensor, points: torch.Tensor, alphas: Sequence[MultiIndex],
                      create_graph: bool) -> Dict[MultiIndex, torch.Tensor]:
    """Every field on the paths to ``alphas`` of one output column ``value`` (N,)."""
    path = closure(alphas)
    fields: Dict[MultiIndex, torch.Tensor] = {path[0]: value}
    # A field that is differentiated again needs its graph even when the result does not.
    parents = {predecessor(a)[0] for a in path if sum(a) > 0}
    gradients: Dict[MultiIndex, torch.Tensor] = {}
    for alpha in path[1:]:
        prev, axis = predecessor(alpha)
        if prev not in gradients:
            children = [c for c in path if sum(c) > 0 and predecessor(c)[0] == prev]
            keep = create_graph or any(c in parents for c in children)
            gradients[prev] = _grad(fields[prev], points, keep)
        fields[alpha] = gradients[prev][:, axis]
    return fields


def _grad(field: torch.Tensor, points: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """d(sum field)/d points, (N, d); zeros where the field does not depend on the points."""
    if not field.requires_grad:
        return torch.zeros_like(points)
    (g,) = torch.autograd.grad(field.sum(), points, create_graph=create_graph,
                               retain_graph=True, allow_unused=True, materialize_grads=True)
    return g


def derivatives_by_name(model: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                        names: Iterable[str], outputs: Sequence[str], axes: Axes,
                        create_graph: bool = True) -> Dict[str, torch.Tensor]:
    """:func:`nd_derivatives` keyed by the names residuals use (``u``, ``u_xy``, ``v_xxxx``),
    each name as given (``u_yx`` and ``u_xy`` are the same field)."""
    names = list(names)
    parsed = [parse_key(n, outputs, axes) for n in names]
    fields = nd_derivatives(model, points, parsed, create_graph=create_graph)
    return {n: fields[p] for n, p in zip(names, parsed)}


def laplacian(fields: Dict[Derivative, torch.Tensor], output: int, axes: Axes) -> torch.Tensor:
    """The Laplacian over the space axes of output ``output``, from the second partials in
    ``fields`` (request them with :func:`laplacian_terms`)."""
    return sum(fields[Derivative(output, a)] for a in axes.laplacian())


def laplacian_terms(output: int, axes: Axes) -> List[Derivative]:
    """The derivatives a Laplacian of output ``output`` reads."""
    return [Derivative(output, a) for a in axes.laplacian()]
