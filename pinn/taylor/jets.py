"""Jets: mixed second partials and pure partials up to order 4, block by block.

Along an input column v a block's pre-activation z carries its derivatives z_1 .. z_K (K <= 4)
with respect to v, and an activation f maps them by Faa di Bruno's formula, with f_k the k-th
derivative of f at z:

    a_1 = f_1 z_1
    a_2 = f_1 z_2 + f_2 z_1^2
    a_3 = f_1 z_3 + 3 f_2 z_1 z_2 + f_3 z_1^3
    a_4 = f_1 z_4 + f_2 (4 z_1 z_3 + 3 z_2^2) + 6 f_3 z_1^2 z_2 + f_4 z_1^4

and a mixed second derivative along v and w by a_vw = f_1 z_vw + f_2 z_v z_w (exact: no
polarization, so no cancellation). A Linear layer maps every channel with one matrix product
(its bias enters the value only); batch normalization with constant statistics (``detached``,
``frozen``, or any mode under ``eval()``) scales every channel and shifts the value. The
channels are those of a :class:`.structure.JetPlan`, in the (w, C, N) layout of
:mod:`.pointwise`.

The parameter gradient comes from autograd through this forward pass (compiled, the
compiler derives the reverse graph). Requests of values, first and pure second partials
alone keep the hand-written channels of :mod:`.chained` and :mod:`.layered`.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from pinn.taylor import pointwise
from pinn.taylor.compiled import bound_function
from pinn.taylor.layered import through_blocks
from pinn.taylor.structure import JetPlan


def activation_derivatives(kind: str, z: Tensor, order: int) -> List[Tensor]:
    """[f, f_1, ..., f_order] at z (order <= 4), each shaped like z: closed forms (for tanh
    polynomials in f itself, so one transcendental function per element)."""
    if kind == "tanh":
        a = torch.tanh(z)
        f1 = 1 - a * a
        a2 = a * a
        fs = [a, f1, -2 * a * f1, -2 * f1 * (1 - 3 * a2), 8 * a * f1 * (2 - 3 * a2)]
    elif kind == "sin":
        s, c = torch.sin(z), torch.cos(z)
        fs = [s, c, -s, -c, s]
    elif kind == "silu":  # f = z sigma: f_k = k sigma_(k-1) + z sigma_k
        s = torch.sigmoid(z)
        s1 = s * (1 - s)
        s2 = s1 * (1 - 2 * s)
        s3 = s1 * (1 - 6 * s * (1 - s))
        s4 = s2 * (1 - 12 * s * (1 - s))
        fs = [z * s, s + z * s1, 2 * s1 + z * s2, 3 * s2 + z * s3, 4 * s3 + z * s4]
    elif kind == "gelu":  # exact (erf) form: f = z Phi(z), phi' = -z phi
        cdf = 0.5 * (1 + torch.erf(z * pointwise._SQRT1_2))
        pdf = torch.exp(-0.5 * z * z) * pointwise._INV_SQRT_2PI
        z2 = z * z
        fs = [z * cdf, cdf + z * pdf, pdf * (2 - z2), pdf * z * (z2 - 4),
              pdf * ((7 - z2) * z2 - 4)]
    else:
        raise ValueError(f"unknown activation {kind!r}")
    return fs[:order + 1]


def faa_di_bruno(f: List[Tensor], z: List[Tensor]) -> List[Tensor]:
    """[a_1, ..., a_K]: the derivatives of f(z(s)) from z = [z_1, ..., z_K] (K <= 4, the
    derivatives of z(s)) and f = [f, f_1, ..., f_K] at z(s)."""
    z1 = z[0]
    out = [f[1] * z1]
    if len(z) > 1:
        z2 = z[1]
        sq = z1 * z1
        out.append(f[1] * z2 + f[2] * sq)
    if len(z) > 2:
        z3 = z[2]
        out.append(f[1] * z3 + 3 * f[2] * z1 * z2 + f[3] * sq * z1)
    if len(z) > 3:
        out.append(f[1] * z[3] + f[2] * (4 * z1 * z3 + 3 * z2 * z2) + 6 * f[3] * sq * z2
                   + f[4] * sq * sq)
    return out


def jet_map(kind: str, orders: Tuple[int, ...], mixed: Tuple[Tuple[int, int], ...],
            first: bool, y: Tensor, J: Optional[Tensor], c: Optional[Tensor],
            s: Optional[Tensor], beta: Optional[Tensor]) -> Tensor:
    """Bias, batch normalization with constant statistics and the activation, on every channel
    of a jet plan (``orders``, ``mixed``: see :class:`.structure.JetPlan`).

    Args:
        kind: activation kind.
        first: the input layer, whose rows are given as ``y`` (w, N) and ``J`` (w, n_axes):
            first derivatives that do not depend on the point, and no higher or mixed ones.
        y: (w, C, N) pre-activation rows in the plan's order, bias not added; (w, N) value
            rows for the input layer.
        J: (w, n_axes) the input layer's first-derivative rows, else None.
        c: (w,) added to the value rows, or None.
        s: (w,) BN scale applied to all rows, or None.
        beta: (w,) BN shift of the value rows (given whenever s is).

    Returns:
        (w, C, N) the activation's rows in the plan's order.
    """
    z0 = y if first else y[:, 0]
    if c is not None:
        z0 = z0 + c[:, None]
    if s is not None:
        z0 = z0 * s[:, None] + beta[:, None]
    top = max(orders + ((2,) if mixed else ()), default=0)
    f = activation_derivatives(kind, z0, top)
    parts = [f[0]]
    if first:  # z_1 = J (constant), z_k = 0 for k > 1: a_k = f_k J^k
        Js = J if s is None else J * s[:, None]
        e = [Js[:, p:p + 1] for p in range(len(orders))]  # (w, 1) each
        for p, order in enumerate(orders):
            power = e[p]
            for k in range(1, order + 1):
                parts.append(f[k] * power)
                if k < order:
                    power = power * e[p]
        parts += [f[2] * (e[p] * e[q]) for p, q in mixed]
        return torch.stack(parts, 1)
    row = 1
    firsts = []
    for order in orders:
        z = [y[:, row + k] if s is None else y[:, row + k] * s[:, None] for k in range(order)]
        firsts.append(z[0])
        parts += faa_di_bruno(f, z)
        row += order
    for m, (p, q) in enumerate(mixed):
        zpq = y[:, row + m] if s is None else y[:, row + m] * s[:, None]
        parts.append(f[1] * zpq + f[2] * (firsts[p] * firsts[q]))
    return torch.stack(parts, 1)


def jet_function(kind: str, plan: JetPlan, first: bool, compile: bool) -> Callable:
    """:func:`jet_map` for one block type and plan, compiled if asked."""
    def bind(eager: bool):
        def fwd(y, J, c, s, beta):
            return jet_map(kind, plan.orders, plan.mixed, first, y, J, c, s, beta)
        return fwd

    orders = "+".join(str(k) for k in plan.orders)
    name = (f"{kind} {'input' if first else 'hidden'} block, jets of orders {orders}"
            f"{f' and {len(plan.mixed)} mixed' if plan.mixed else ''}")
    return bound_function(("jet", kind, plan.orders, plan.mixed, first), name, bind, compile)


def jets(blocks: list, plan: JetPlan, points: Tensor, model, compile: bool) -> List[Tensor]:
    """Every block in turn on the plan's channels, then the head (autograd records it).

    Args:
        blocks: [(linear, bn or None, activation kind)] (:func:`.structure.blocks_of`).
        plan: the channels to carry.
        points: (N, d) in the model's dtype.
        model: the :class:`pinn.nn.mlp.MLP` (input map, embedding, head).
        compile: compile the pointwise maps.

    Returns:
        [U, D_1, ...]: the value and each channel of ``plan`` in order, (N, n_out) each.
    """
    return through_blocks(
        blocks, points, model, plan.axes,
        lambda e, h0, scale: e.taylor_jets(h0, scale, plan.axes, plan.orders, plan.mixed),
        lambda kind, first: jet_function(kind, plan, first, compile))
