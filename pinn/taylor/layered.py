"""The network block by block: one autograd node per pointwise map, with each batch-norm
layer's statistics taken between its block's matrix product and its pointwise map.

This path serves every supported network: with batch normalization (whose statistics come from
:meth:`pinn.nn.norm.BatchNorm.statistics` outside any compiled code, so running-statistics
updates, sharing within a step and calibration behave exactly as in ``model(points)``), with an
input embedding, without biases, and points that need a gradient themselves.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pinn.taylor import pointwise
from pinn.taylor.compiled import bound_pair
from pinn.taylor.structure import Channels


class Pointwise(torch.autograd.Function):
    """One block's pointwise map as an autograd node: ``fwd``/``bwd`` are a forward and a
    reverse pointwise function (see :func:`maps`) with the static arguments bound, compiled
    or not. Only H is kept when the reverse pass needs nothing else (``output_only``)."""

    @staticmethod
    def forward(ctx, y, J, c, s, beta, fwd, bwd, output_only):
        H = fwd(y, J, c, s, beta)
        ctx.save_for_backward(None if output_only else y, J, c, s, beta, H)
        ctx.bwd = bwd
        return H

    @staticmethod
    @once_differentiable
    def backward(ctx, G):
        y, J, c, s, beta, H = ctx.saved_tensors
        gy, gJ, gc, gs, gbeta = ctx.bwd(G.contiguous(), y, J, c, s, beta, H)
        return gy, gJ, gc, gs, gbeta, None, None, None


def maps(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool,
         compile: bool) -> Tuple[Callable, Callable]:
    """The (forward, backward) pointwise maps for one block type, compiled if asked."""
    def bind(eager: bool):
        fwd_impl = pointwise.forward_eager if eager else pointwise.forward
        bwd_impl = pointwise.backward_eager if eager else pointwise.backward

        def fwd(y, J, c, s, beta):
            return fwd_impl(kind, n1, n2, sel, first, y, J, c, s, beta)

        def bwd(G, y, J, c, s, beta, H):
            return bwd_impl(kind, n1, n2, sel, first, G, y, J, c, s, beta, H)
        return fwd, bwd

    name = f"{kind} {'input' if first else 'hidden'} block, {n1}+{n2} derivative channels"
    return bound_pair((kind, n1, n2, sel, first), name, bind, compile)


def bn_constants(lin, bn, y0: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor],
                                                Optional[Tensor]]:
    """(c, s, beta) of a block's pointwise map: c = bias - BN mean, s = BN weight /
    sqrt(var + eps), beta = BN bias; (bias, None, None) without BN. The statistics come from
    :meth:`pinn.nn.norm.BatchNorm.statistics` of the block's Linear output, ``y0`` (w, N)
    plus the bias, as ``model(points)`` takes them."""
    if bn is None:
        return lin.bias, None, None
    with torch.no_grad():
        h = y0 if lin.bias is None else y0 + lin.bias[:, None]
    mean, var = bn.statistics(h.t())  # the layer input as model(points) sees it, (N, w)
    s = torch.rsqrt(var + bn.eps) * bn.weight
    c = -mean if lin.bias is None else lin.bias - mean
    return c, s, bn.bias


def through_blocks(blocks: list, points: Tensor, model, axes: Sequence[int],
                   input_rows: Callable[[nn.Module, Tensor, Tensor], Tensor],
                   block_map: Callable[[str, bool], Callable]) -> List[Tensor]:
    """Every block in turn, then the head: the loop that :func:`layered` and
    :func:`.jets.jets` share.

    Args:
        blocks: [(linear, bn or None, activation kind)] (:func:`.structure.blocks_of`).
        points: (N, d) in the model's dtype.
        model: the :class:`pinn.nn.mlp.MLP` (input map, embedding, head).
        axes: the input column of each first-derivative channel, in channel order.
        input_rows: ``(embedding, h0, scale)`` -> the embedded features' rows (F, C, N) of the
            normalized points h0 (N, d).
        block_map: ``(kind, first)`` -> the pointwise map ``(y, J, c, s, beta) -> H`` of a
            block (see :func:`.pointwise.forward`).

    Returns:
        [U, D_1, ...]: the value and each channel in order, (N, n_out) each.
    """
    H = None
    embedding = getattr(model, "embedding", None)
    scale = model.in_scale.to(points.dtype)
    h0 = (points - model.in_center.to(points.dtype)) * scale  # (N, d)
    for i, (lin, bn, kind) in enumerate(blocks):
        W = lin.weight
        J = None
        first = i == 0 and embedding is None
        if i == 0 and embedding is not None:
            # Fixed input features with their closed-form derivative rows (F, C, N): the
            # first block then takes full rows like any hidden block.
            E = input_rows(embedding, h0, scale)
            y = pointwise.linear_rows(E, W)  # (w, C, N)
            y0 = y[:, 0]
        elif i == 0:
            y = W @ h0.t()  # (w, N)
            if axes:
                J = (W * scale)[:, list(axes)]  # (w, n1): d(W h0)/d(points) per channel
            y0 = y
        else:
            y = pointwise.linear_rows(H, W)  # (w, C, N)
            y0 = y[:, 0]
        c, s, beta = bn_constants(lin, bn, y0)
        H = block_map(kind, first)(y, J, c, s, beta)

    Y = pointwise.linear_rows(H, model.head.weight)  # (n_out, C, N)
    U = Y[:, 0].t()
    outs = [(U if model.head.bias is None else U + model.head.bias).contiguous()]
    return outs + [Y[:, k].t().contiguous() for k in range(1, Y.shape[1])]


def layered(blocks: list, ch: Channels, points: Tensor, model, compile: bool) -> List[Tensor]:
    """Every block in turn, then the head.

    Args:
        blocks: [(linear, bn or None, activation kind)] (:func:`.structure.blocks_of`).
        ch: the derivative channels to carry.
        points: (N, d) in the model's dtype.
        model: the :class:`pinn.nn.mlp.MLP` (input map, embedding, head).
        compile: compile the pointwise maps.

    Returns:
        [U, D_1, ...]: the value and each derivative channel in ``ch``'s order, (N, n_out) each.
    """
    def block_map(kind: str, first: bool) -> Callable:
        fwd, bwd = maps(kind, ch.n1, ch.n2, ch.sel, first, compile)

        def apply(y, J, c, s, beta):
            return Pointwise.apply(y, J, c, s, beta, fwd, bwd, pointwise.output_only(kind, s))
        return apply

    return through_blocks(blocks, points, model, ch.idx,
                          lambda e, h0, scale: e.taylor_rows(h0, scale, ch.idx, ch.second_idx),
                          block_map)
