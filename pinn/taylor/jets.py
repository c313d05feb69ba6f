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
:mod:`.pointwise`, and each block's map is one autograd node of :mod:`.layered`.

The reverse pass is written out (:func:`jet_backward`). It rests on one identity: with
b_n = (f' o z)^(n), the derivatives along v of f'(z), which Faa di Bruno's formula gives from
f_2 .. f_(K+1),

    d a_m / d z_k = C(m, k) b_(m-k)        (0 <= k <= m; z_0 = z, b_0 = f_1),

so a block's gradient is dz_k = sum over m >= k of C(m, k) G_m b_(m-k) per column, plus the
mixed channels' d a_vw / dz = f_2 z_vw + f_3 z_v z_w, d a_vw / dz_v = f_2 z_w. Requests of
values, first and pure second partials alone keep the channels of :mod:`.chained` and
:mod:`.layered`.
"""
from __future__ import annotations

from math import comb
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from pinn.taylor import pointwise
from pinn.taylor.compiled import bound_pair
from pinn.taylor.layered import Pointwise, through_blocks
from pinn.taylor.structure import JetPlan

Orders = Tuple[int, ...]
Mixed = Tuple[Tuple[int, int], ...]


def activation_derivatives(kind: str, z: Tensor, order: int,
                           a: Optional[Tensor] = None) -> List[Tensor]:
    """[f, f_1, ..., f_order] at z (order <= 5), each shaped like z, in closed form; for tanh
    polynomials in a = tanh z (given, or computed), so no transcendental function at all
    when ``a`` is given."""
    if kind == "tanh":
        a = pointwise._tanh(z) if a is None else a
        a2 = a * a
        f1 = 1 - a2
        fs = [a, f1, -2 * a * f1, -2 * f1 * (1 - 3 * a2), 8 * a * f1 * (2 - 3 * a2),
              8 * f1 * (2 - 15 * a2 * f1)]
    elif kind == "sin":
        s, c = torch.sin(z), torch.cos(z)
        fs = [s, c, -s, -c, s, c]
    elif kind == "silu":  # f = z sigma: f_k = k sigma_(k-1) + z sigma_k
        s = torch.sigmoid(z)
        s1 = s * (1 - s)
        s2 = s1 * (1 - 2 * s)
        s3 = s1 * (1 - 6 * s1)
        s4 = s2 * (1 - 12 * s1)
        s5 = s1 * (1 - 30 * s1 + 120 * s1 * s1)
        fs = [z * s, s + z * s1, 2 * s1 + z * s2, 3 * s2 + z * s3, 4 * s3 + z * s4,
              5 * s4 + z * s5]
    elif kind == "gelu":  # exact (erf) form: f = z Phi(z), phi' = -z phi
        cdf = 0.5 * (1 + torch.erf(z * pointwise._SQRT1_2))
        pdf = torch.exp(-0.5 * z * z) * pointwise._INV_SQRT_2PI
        z2 = z * z
        fs = [z * cdf, cdf + z * pdf, pdf * (2 - z2), pdf * z * (z2 - 4),
              pdf * ((7 - z2) * z2 - 4), pdf * z * (z2 - 9) * (z2 - 2)]
    else:
        raise ValueError(f"unknown activation {kind!r}")
    return fs[:order + 1]


def faa_di_bruno(f: List[Tensor], z: List[Tensor]) -> List[Tensor]:
    """[a_1, ..., a_K]: the derivatives of f(z(s)) from z = [z_1, ..., z_K] (K <= 4, the
    derivatives of z(s)) and f = [f, f_1, ..., f_K] at z(s) (f[0] is not read)."""
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


def _inputs(orders: Orders, mixed: Mixed, first: bool, y: Tensor, J: Optional[Tensor],
            c: Optional[Tensor], s: Optional[Tensor], beta: Optional[Tensor]):
    """The pointwise map's inputs: (x0 = value rows + c, z0 = x0 after BN (w, N), per column
    of the plan its rows [z_1, ..., z_K] after BN, the mixed rows after BN).

    For the input layer (``first``) a column's rows are [its J column (w, 1)]: its higher and
    mixed derivatives vanish, and none is given."""
    y0 = y if first else y[:, 0]
    x0 = y0 if c is None else y0 + c[:, None]
    z0 = x0 if s is None else x0 * s[:, None] + beta[:, None]
    if first:
        Js = J if s is None else J * s[:, None]
        return x0, z0, [[Js[:, p:p + 1]] for p in range(len(orders))], []

    def scaled(r: Tensor) -> Tensor:
        return r if s is None else r * s[:, None]

    rows, row = [], 1
    for order in orders:
        rows.append([scaled(y[:, row + k]) for k in range(order)])
        row += order
    return x0, z0, rows, [scaled(y[:, row + m]) for m in range(len(mixed))]


def jet_forward(kind: str, orders: Orders, mixed: Mixed, top: int, first: bool, y: Tensor,
                J: Optional[Tensor], c: Optional[Tensor], s: Optional[Tensor],
                beta: Optional[Tensor]) -> Tensor:
    """Bias, batch normalization with constant statistics and the activation, on every channel
    of a jet plan (``orders``, ``mixed``: see :class:`.structure.JetPlan`).

    Args:
        kind: activation kind.
        top: the highest order of the plan (:attr:`.structure.JetPlan.top`).
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
    _, z0, rows, mixed_rows = _inputs(orders, mixed, first, y, J, c, s, beta)
    f = activation_derivatives(kind, z0, top)
    parts = [f[0]]
    for order, z in zip(orders, rows):
        if first:  # a_k = f_k J^k
            power = z[0]
            for k in range(1, order + 1):
                parts.append(f[k] * power)
                if k < order:
                    power = power * z[0]
        else:
            parts += faa_di_bruno(f, z)
    for m, (p, q) in enumerate(mixed):
        e = rows[p][0] * rows[q][0]
        parts.append(f[2] * e if first else f[1] * mixed_rows[m] + f[2] * e)
    return torch.stack(parts, 1)


def jet_backward(kind: str, orders: Orders, mixed: Mixed, top: int, first: bool, G: Tensor,
                 y: Tensor, J: Optional[Tensor], c: Optional[Tensor], s: Optional[Tensor],
                 beta: Optional[Tensor], H: Tensor):
    """Reverse pass of :func:`jet_forward`, given its output H and the gradient G (w, C, N);
    see the module docstring for the rule.

    Returns:
        (gy shaped like y, gJ (w, n_axes) or None, gc, gs, gbeta: (w,) or None each).
    """
    x0, z0, rows, mixed_rows = _inputs(orders, mixed, first, y, J, c, s, beta)
    f = activation_derivatives(kind, z0, top + 1,
                               a=H[:, 0] if kind == "tanh" else None)
    gz0 = f[1] * G[:, 0]
    grads: List[List[Tensor]] = []  # per column, the gradient of its rows
    row = 1
    for order, z in zip(orders, rows):
        g = [G[:, row + m] for m in range(order)]  # G_1 .. G_K
        row += order
        if first:  # b_n = f_(n+1) J^n; only the row of J has a gradient
            powers = [None, z[0]]
            for _ in range(2, order + 1):
                powers.append(powers[-1] * z[0])
            g1 = f[1] * g[0]
            for m in range(1, order + 1):
                gz0 = torch.addcmul(gz0, g[m - 1], f[m + 1] * powers[m])
                if m > 1:
                    g1 = torch.addcmul(g1, g[m - 1], f[m] * (m * powers[m - 1]))
            grads.append([g1])
            continue
        b = [f[1]] + faa_di_bruno(f[1:], z)  # b_0 .. b_K
        for m in range(1, order + 1):
            gz0 = torch.addcmul(gz0, g[m - 1], b[m])
        grads.append([_binomial_sum(g, b, k) for k in range(1, order + 1)])
    mixed_grads = []
    for m, (p, q) in enumerate(mixed):
        g = G[:, row + m]
        zp, zq = rows[p][0], rows[q][0]
        term = f[3] * zp * zq
        if not first:
            term = term + f[2] * mixed_rows[m]
            mixed_grads.append(f[1] * g)
        gz0 = gz0 + g * term
        f2g = f[2] * g
        grads[p][0] = grads[p][0] + f2g * zq
        grads[q][0] = grads[q][0] + f2g * zp
    gbeta = None if s is None else gz0.sum(1)
    gx0 = gz0 if s is None else gz0 * s[:, None]
    gc = None if c is None else gx0.sum(1)
    if first:
        gJ = torch.stack([gr[0].sum(1) for gr in grads], 1)  # (w, n_axes): J is per feature
        gs = None
        if s is not None:
            gs = (gz0 * x0).sum(1) + (gJ * J).sum(1)
            gJ = gJ * s[:, None]
        return gx0, gJ, gc, gs, gbeta
    gd = [g for gr in grads for g in gr] + mixed_grads  # in channel order
    gs = None
    if s is not None:
        gs = (gz0 * x0).sum(1)
        for i, g in enumerate(gd):
            gs = gs + (g * y[:, 1 + i]).sum(1)
        gd = [g * s[:, None] for g in gd]
    return torch.stack([gx0] + gd, 1), None, gc, gs, gbeta


def _binomial_sum(g: List[Tensor], b: List[Tensor], k: int) -> Tensor:
    """sum over m = k..K of C(m, k) G_m b_(m-k), with g = [G_1, ..., G_K]."""
    out = g[k - 1] * b[0]
    for m in range(k + 1, len(g) + 1):
        out = torch.addcmul(out, g[m - 1], b[m - k], value=comb(m, k))
    return out


def jet_maps(kind: str, plan: JetPlan, first: bool, compile: bool) -> Tuple[Callable, Callable]:
    """The (forward, backward) jet maps for one block type and plan, compiled if asked."""
    orders, mixed, top = plan.orders, plan.mixed, plan.top

    def bind(eager: bool):
        def fwd(y, J, c, s, beta):
            return jet_forward(kind, orders, mixed, top, first, y, J, c, s, beta)

        def bwd(G, y, J, c, s, beta, H):
            return jet_backward(kind, orders, mixed, top, first, G, y, J, c, s, beta, H)
        return fwd, bwd

    name = (f"{kind} {'input' if first else 'hidden'} block, jets of orders "
            f"{'+'.join(str(k) for k in orders)}"
            f"{f' and {len(mixed)} mixed' if mixed else ''}")
    return bound_pair(("jet", kind, orders, mixed, first), name, bind, compile)


def jets(blocks: list, plan: JetPlan, points: Tensor, model, compile: bool) -> List[Tensor]:
    """Every block in turn on the plan's channels, then the head.

    Args:
        blocks: [(linear, bn or None, activation kind)] (:func:`.structure.blocks_of`).
        plan: the channels to carry.
        points: (N, d) in the model's dtype.
        model: the :class:`pinn.nn.mlp.MLP` (input map, embedding, head).
        compile: compile the pointwise maps.

    Returns:
        [U, D_1, ...]: the value and each channel of ``plan`` in order, (N, n_out) each.
    """
    def block_map(kind: str, first: bool) -> Callable:
        fwd, bwd = jet_maps(kind, plan, first, compile)
        return lambda y, J, c, s, beta: Pointwise.apply(y, J, c, s, beta, fwd, bwd, False)

    return through_blocks(
        blocks, points, model, plan.axes,
        lambda e, h0, scale: e.taylor_jets(h0, scale, plan.axes, plan.orders, plan.mixed),
        block_map)
