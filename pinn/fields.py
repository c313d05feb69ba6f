"""The fields a residual reads at a set of points, by the engine a run chose.

A problem asks for derivatives as :class:`pinn.coords.Derivative` (output, multi-index). Where
the network has two input columns and every request is a value, a first or a pure second
partial, the request has 1-D names (``U``, ``Ux``, ``Ut``, ``Uxx``, ``Utt``, the first column
standing for x and the second for t, whatever the axes are called) and goes to
:func:`pinn.derivatives.compute_derivatives` (the path every problem in (x, t) has always
taken, bit for bit); any other request goes to :func:`pinn.taylor.taylor_partials` when the
run uses the Taylor engine (values, pure partials up to order 4 and mixed second partials on any
number of columns: every key the problems read, u_xy, u_xxx for KdV, u_xxxx for
Kuramoto-Sivashinsky), and to the reverse-mode reference :func:`pinn.derivatives_nd.nd_derivatives`
otherwise. The Taylor engine declines what it cannot take (a mixed partial of order 3 or more,
BN in ``batch`` mode, an output transform with mixed or higher partials: see
:func:`taylor_reason`); the trainer then takes autograd and records why.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn

from pinn.coords import Derivative, legacy_key
from pinn.derivatives import compute_derivatives
from pinn.derivatives_func import func_derivatives
from pinn.derivatives_nd import nd_derivatives
from pinn.taylor import taylor_partials, taylor_unsupported, unsupported_reason


def legacy_request(wanted: Iterable[Derivative]) -> Optional[frozenset]:
    """The 1-D keys of ``wanted`` where every derivative has one (two input columns, values,
    first and pure second partials), else None."""
    keys = {legacy_key(d) for d in wanted}
    return None if None in keys else frozenset(keys | {"U"})


def taylor_reason(model: nn.Module, wanted: Iterable[Derivative]) -> Optional[str]:
    """Why the Taylor engine cannot compute ``wanted`` for ``model`` (in its current mode), or
    None: the (x, t) engine's reasons for a request with 1-D names, the general engine's
    (mixed partials of order 3 and up, networks it does not know) otherwise."""
    wanted = list(wanted)
    transform = getattr(model, "output_transform", None)
    if transform is not None and not getattr(transform, "taylor", True):
        return transform.reason
    if legacy_request(wanted) is not None:
        return unsupported_reason(model)
    return taylor_unsupported(model, wanted)


def point_fields(model: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                 wanted: Iterable[Derivative], engine: str = "autograd",
                 compile: bool = False, create_graph: bool = True
                 ) -> Dict[Derivative, torch.Tensor]:
    """Each derivative of ``wanted`` at ``points`` (N, d), as an (N, 1) column.

    Args:
        engine: ``autograd`` or ``taylor``; ``taylor`` for a request it cannot compute
            (:func:`taylor_reason`) raises (the caller chooses the engine and says why).
            ``func``: :mod:`pinn.derivatives_func`, pure functions that ``torch.func``
            transforms compose with (a Gauss-Newton method's Jacobian; not for training).
        create_graph: keep the graph for a loss differentiated in the parameters.
    """
    wanted = list(dict.fromkeys(wanted))
    if engine == "func":  # composes with torch.func transforms (pinn.residual_vector)
        return {w: v[:, None] for w, v in func_derivatives(model, points, wanted).items()}
    keys = legacy_request(wanted)
    transform = getattr(model, "output_transform", None)
    if engine == "taylor" and transform is not None and not getattr(transform, "taylor", True):
        raise ValueError(f"taylor derivatives: {transform.reason}")
    if keys is not None:
        d = compute_derivatives(model, points[:, :1], points[:, 1:2], keys,
                                create_graph=create_graph, engine=engine, compile=compile)
        return {w: d[legacy_key(w)][:, w.output : w.output + 1] for w in wanted}
    if engine == "taylor":
        reason = taylor_unsupported(model, wanted)
        if reason is not None:
            raise ValueError(f"taylor derivatives: {reason}")
        fields = taylor_partials(model, points, wanted, compile=compile)
        if not create_graph:
            fields = {w: v.detach() for w, v in fields.items()}
    else:
        fields = nd_derivatives(model, points, wanted, create_graph=create_graph)
    return {w: v[:, None] for w, v in fields.items()}


__all__ = ["point_fields", "legacy_request", "taylor_reason"]
