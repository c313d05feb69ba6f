"""The whole network as one autograd node, for networks without batch normalization.

Without BN nothing has to happen between the layers, so the forward pass over all blocks and
its reverse pass are two pure functions of the parameters: one autograd node for the whole
network, and, compiled, two graphs per shape instead of two per block (less dispatch, and the
head's rank-1 products fuse into the neighbouring pointwise loops). Every bias must be there
and the points must not need a gradient; otherwise :mod:`.layered` serves.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pinn.taylor import pointwise
from pinn.taylor.compiled import bound_pair
from pinn.taylor.structure import Channels


def _chain_forward(kinds: Tuple[str, ...], d: int, idx: Tuple[int, ...], n2: int,
                   sel: Tuple[int, int], eager: bool, points: Tensor, center: Tensor,
                   scale: Tensor, params: List[Tensor]):
    """All blocks and the head on all channels.

    Args:
        kinds: activation kind per hidden block.
        d: input columns.
        idx: input columns of the first-derivative channels.
        n2, sel: second-derivative channels, as in :func:`pointwise.forward`.
        eager: use the eager pointwise maps (else the compiler-friendly ones).
        points: (N, d); center, scale: (d,) the input map.
        params: [W_0, b_0, ..., W_{L-1}, b_{L-1}, W_head, b_head].

    Returns:
        (outputs, saved): outputs = [U, D_1, ...] each (N, n_out); saved = tensors for
        :func:`_chain_backward`.
    """
    n1 = len(idx)
    pw = pointwise.forward_eager if eager else pointwise.forward
    h0 = (points - center) * scale  # (N, d)
    W0 = params[0]
    # W0 @ h0^T with an inner dimension of d (a few columns), written pointwise so that it
    # fuses into the input block's pointwise map (a BLAS call would write and re-read a (w, N)
    # tensor).
    y = W0[:, 0:1] * h0[:, 0]  # (w, N)
    for j in range(1, d):
        y = y + W0[:, j:j + 1] * h0[:, j]
    J = (W0 * scale)[:, list(idx)] if n1 else None  # (w, n1)
    H = pw(kinds[0], n1, n2, sel, True, y, J, params[1], None, None)
    saved = [h0, None if pointwise.output_only(kinds[0], None) else y, H]
    for i in range(1, len(kinds)):
        y = pointwise.linear_rows(H, params[2 * i])
        H = pw(kinds[i], n1, n2, sel, False, y, None, params[2 * i + 1], None, None)
        saved += [None if pointwise.output_only(kinds[i], None) else y, H]
    Y = pointwise.linear_rows(H, params[-2])  # (n_out, C, N)
    outs = [(Y[:, 0].t() + params[-1]).contiguous()]
    outs += [Y[:, k].t().contiguous() for k in range(1, Y.shape[1])]
    return outs, saved


def _chain_backward(kinds: Tuple[str, ...], d: int, idx: Tuple[int, ...], n2: int,
                    sel: Tuple[int, int], eager: bool, grads: List[Tensor], scale: Tensor,
                    params: List[Tensor], saved: List[Tensor]) -> List[Tensor]:
    """Reverse pass of :func:`_chain_forward`: the gradient of every parameter, in order."""
    n1 = len(idx)
    pwb = pointwise.backward_eager if eager else pointwise.backward
    L = len(kinds)
    out: List[Optional[Tensor]] = [None] * len(params)
    gY = torch.stack([g.t() for g in grads], 1)  # (n_out, C, N)
    n_out, C, N = gY.shape
    H = saved[-1]
    w = H.shape[0]
    out[-1] = grads[0].sum(0)
    out[-2] = gY.reshape(n_out, C * N) @ H.reshape(w, C * N).t()
    Wh = params[-2]
    if n_out <= 4:
        # A sum of n_out outer products: written pointwise it fuses into the next reverse
        # pointwise map instead of materializing (w, C, N) through a rank-n_out GEMM, which
        # the BLAS runs far below its usual rate.
        G = Wh[0][:, None, None] * gY[0]
        for o in range(1, n_out):
            G = G + Wh[o][:, None, None] * gY[o]
    else:
        G = (Wh.t() @ gY.reshape(n_out, C * N)).view(w, C, N)
    for i in range(L - 1, 0, -1):
        y, H = saved[1 + 2 * i], saved[2 + 2 * i]
        Hin = saved[2 * i]
        gy, _, gc, _, _ = pwb(kinds[i], n1, n2, sel, False, G, y, None, params[2 * i + 1],
                              None, None, H)
        w_out, w_in = params[2 * i].shape
        gy2 = gy.reshape(w_out, C * N)
        out[2 * i] = gy2 @ Hin.reshape(w_in, C * N).t()
        out[2 * i + 1] = gc
        G = (params[2 * i].t() @ gy2).view(w_in, C, N)
    h0, y, H = saved[0], saved[1], saved[2]
    W0 = params[0]
    J = (W0 * scale)[:, list(idx)] if n1 else None
    gy0, gJ, gc, _, _ = pwb(kinds[0], n1, n2, sel, True, G, y, J, params[1], None, None, H)
    # gW0 = gy0 @ h0 with an inner dimension of d: as d row sums it fuses into the reverse
    # pointwise map of the input block (which reduces over the points for the bias anyway).
    cols = [(gy0 * h0[:, j]).sum(1) for j in range(d)]
    for k, j in enumerate(idx):  # J[:, k] = W0[:, j] * scale[j]
        cols[j] = cols[j] + gJ[:, k] * scale[j]
    out[0] = torch.stack(cols, 1)
    out[1] = gc
    return out


class _Chain(torch.autograd.Function):
    """The whole network (no BN) as one autograd node; ``fwd``/``bwd`` are
    :func:`_chain_forward`/:func:`_chain_backward` with static arguments bound."""

    @staticmethod
    def forward(ctx, fwd, bwd, points, center, scale, *params):
        outs, saved = fwd(points, center, scale, list(params))
        ctx.save_for_backward(scale, *params, *saved)
        ctx.n_params = len(params)
        ctx.bwd = bwd
        return tuple(outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        scale, *rest = ctx.saved_tensors
        params, saved = rest[:ctx.n_params], rest[ctx.n_params:]
        gp = ctx.bwd([g.contiguous() for g in grads], scale, list(params), list(saved))
        return (None, None, None, None, None, *gp)



def chain_maps(kinds: Tuple[str, ...], d: int, idx: Tuple[int, ...], n2: int,
               sel: Tuple[int, int], compile: bool) -> Tuple[Callable, Callable]:
    """The (forward, backward) whole-network functions for one architecture and request."""
    def bind(eager: bool):
        def fwd(points, center, scale, params):
            return _chain_forward(kinds, d, idx, n2, sel, eager, points, center, scale, params)

        def bwd(grads, scale, params, saved):
            return _chain_backward(kinds, d, idx, n2, sel, eager, grads, scale, params, saved)
        return fwd, bwd

    name = f"network {'-'.join(kinds)}, {len(idx)}+{n2} derivative channels"
    if d != 2:
        name += f", {d} input columns"
    return bound_pair(("chain", kinds, d, idx, n2, sel), name, bind, compile)


def serves(blocks: list, points: Tensor, model) -> bool:
    """Whether this path can take the network and the points (no BN, no embedding, every
    bias, points that need no gradient)."""
    return (getattr(model, "embedding", None) is None
            and not any(bn is not None for _, bn, _ in blocks)
            and all(lin.bias is not None for lin, _, _ in blocks)
            and model.head.bias is not None and not points.requires_grad)


def chained(blocks: list, ch: Channels, points: Tensor, model, compile: bool) -> List[Tensor]:
    """The whole network in one node; same arguments and result as :func:`.layered.layered`."""
    kinds = tuple(kind for _, _, kind in blocks)
    fwd, bwd = chain_maps(kinds, points.shape[1], ch.idx, ch.n2, ch.sel, compile)
    params = [p for lin, _, _ in blocks for p in (lin.weight, lin.bias)]
    params += [model.head.weight, model.head.bias]
    return list(_Chain.apply(fwd, bwd, points, model.in_center.to(points.dtype),
                             model.in_scale.to(points.dtype), *params))
