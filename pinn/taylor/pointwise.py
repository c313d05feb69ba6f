"""The pointwise half of a Taylor-mode block and its reverse pass.

A block's matrix product gives the rows of its pre-activation: the value and one row per
derivative channel. The pointwise map adds the bias, applies batch normalization with constant
statistics and the activation f with its closed-form derivatives,

    a = f(z),  a_v = f'(z) z_v,  a_vv = f'(z) z_vv + f''(z) z_v^2      (v: an input column),

whatever the number of input columns: a channel is a channel. The reverse pass is written out
(:func:`backward`), not left to autograd. :func:`forward` and :func:`backward` are pure tensor
functions, the form ``torch.compile`` fuses into one loop per block and direction;
:func:`forward_eager` and :func:`backward_eager` compute the same values with in-place
operations for eager execution.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _tanh(z: Tensor) -> Tensor:
    """tanh through expm1: tanh|z| = -e / (2 + e) with e = expm1(-2|z|) in (-1, 0].

    The vectorized exponential costs about a third of the vectorized tanh on this CPU; this
    form keeps full relative precision near 0 and never overflows."""
    e = torch.expm1(-2 * z.abs())
    return torch.copysign(-e / (2 + e), z)


def act_forward(kind: str, z: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """f(z), f'(z), f''(z) elementwise, each shaped like z."""
    if kind == "tanh":
        a = _tanh(z)
        f1 = 1 - a * a
        return a, f1, -2 * a * f1
    if kind == "sin":
        a = torch.sin(z)
        return a, torch.cos(z), -a
    if kind == "silu":
        s = torch.sigmoid(z)
        ds = s * (1 - s)
        return z * s, s + z * ds, ds * (2 + z * (1 - 2 * s))
    if kind == "gelu":  # exact (erf) form: f = z Phi(z), f' = Phi + z phi, f'' = phi (2 - z^2)
        cdf = 0.5 * (1 + torch.erf(z * _SQRT1_2))
        pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
        return z * cdf, cdf + z * pdf, pdf * (2 - z * z)
    raise ValueError(f"unknown activation {kind!r}")


def act_backward(kind: str, z: Tensor, a: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """f'(z), f''(z), f'''(z) elementwise, given z and a = f(z). The tanh derivatives are
    polynomials in a, so its backward pass evaluates no transcendental function at all."""
    if kind == "tanh":
        f1 = 1 - a * a
        return f1, -2 * a * f1, -2 * f1 * (1 - 3 * a * a)
    if kind == "sin":
        c = torch.cos(z)
        return c, -a, -c
    if kind == "silu":
        s = torch.sigmoid(z)
        ds = s * (1 - s)
        u = 1 - 2 * s
        return s + z * ds, ds * (2 + z * u), ds * (u * (3 + z * u) - 2 * z * ds)
    if kind == "gelu":
        cdf = 0.5 * (1 + torch.erf(z * _SQRT1_2))
        pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
        z2 = z * z
        return cdf + z * pdf, pdf * (2 - z2), pdf * z * (z2 - 4)
    raise ValueError(f"unknown activation {kind!r}")


# Layout. Activations are kept feature-major, (w, C, N): feature j, channel c, point n. A
# Linear layer is then W @ H.view(w_in, C * N), one matrix product whose long dimension is the
# contiguous one (on this CPU about 20% faster than (C * N, w) @ W^T for w = 20..80), and the
# pointwise maps below run over contiguous rows of N points with per-row constants.
#
# A pointwise map takes the pre-activation rows y of a block (its Linear output without bias)
# and per-feature constants c, s, beta: z = (y0 + c) * s + beta on the value rows, d * s on the
# derivative rows (c = Linear bias - BN mean, s = BN weight / sqrt(var + eps), beta = BN bias;
# without BN: z = y0 + c and no scaling), then the activation. Its backward is written out
# rather than left to autograd: one pass that reads the saved rows once, with no masked
# gathers for the stacked channels and no re-evaluation of tanh.

def _rows(first: bool, n1: int, n2: int, y: Tensor, J: Optional[Tensor]):
    """(y0 (w, N), d1 (w, n1, N or 1) or None, d2 (w, n2, N) or None) of a block's input."""
    if first:  # the input layer: derivative rows do not depend on the point; no second ones
        return y, (J[:, :, None] if n1 else None), None
    return y[:, 0], (y[:, 1:1 + n1] if n1 else None), (y[:, 1 + n1:] if n2 else None)


def forward(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool, y: Tensor,
            J: Optional[Tensor], c: Optional[Tensor], s: Optional[Tensor],
            beta: Optional[Tensor]) -> Tensor:
    """Bias, batch normalization with constant statistics and the activation, on all channels.

    Args:
        kind: activation kind.
        n1, n2: numbers of first- and second-derivative channels.
        sel: (start, stop) of the first-derivative channels that the second-derivative ones
            belong to, in the same order (u_xx needs the x channel, u_tt the t channel).
        first: the input layer, whose rows are given as ``y`` (w, N) and ``J`` (w, n1).
        y: (w, C, N) pre-activation rows [value; firsts; seconds], bias not added; (w, N)
            value rows for the input layer.
        J: (w, n1) point-independent first-derivative rows of the input layer, else None.
        c: (w,) added to the value rows, or None.
        s: (w,) BN scale applied to all rows, or None.
        beta: (w,) BN shift of the value rows (given whenever s is).

    Returns:
        (w, 1 + n1 + n2, N) stacked activations [a; a_firsts; a_seconds].
    """
    y0, d1, d2 = _rows(first, n1, n2, y, J)
    z = y0 if c is None else y0 + c[:, None]
    if s is not None:
        z = z * s[:, None] + beta[:, None]
        sc = s[:, None, None]
        d1 = None if d1 is None else d1 * sc
        d2 = None if d2 is None else d2 * sc
    a, f1, f2 = act_forward(kind, z)
    # One (w, N) piece per channel, stacked: the compiler then fuses all channels into one
    # loop over (w, N) that evaluates the activation once per element.
    parts = [a] + [f1 * d1[:, i] for i in range(n1)]
    for k in range(n2):
        e = d1[:, sel[0] + k]
        second = f2 * (e * e)
        parts.append(second if d2 is None else second + f1 * d2[:, k])
    return torch.stack(parts, 1)


def output_only(kind: str, s: Optional[Tensor]) -> bool:
    """Whether the reverse pass of a block needs only its output H (see :func:`backward`)."""
    return kind == "tanh" and s is None


def backward(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool, G: Tensor,
             y: Optional[Tensor], J: Optional[Tensor], c: Optional[Tensor],
             s: Optional[Tensor], beta: Optional[Tensor], H: Tensor):
    """Reverse pass of :func:`forward`, given its output H and the gradient G (w, C, N).

    With A1 = f'(z) D1 and A2 = f'(z) D2 + f''(z) E^2 (E: the first-derivative rows that the
    second-derivative rows belong to):

        dz = f' G0 + f'' sum(G1 D1) + sum(G2 (f'' D2 + f''' E^2))
        dD1 = f' G1 (+ 2 f'' E G2 on the channels of E),   dD2 = f' G2

    then back through the affine map to y, J, c, s, beta. For tanh without BN the input rows
    are not needed (``y`` may be None): with a = tanh z, f'' = -2 a f' and f''' + 2 a f'' =
    -2 f'^2, so f'' D1 = -2 a A1, f'' E = -2 a A1[E] and f'' D2 + f''' E^2 = -2 a A2 - 2 A1[E]^2
    are functions of H alone. The forward pass then keeps only H, which the next matrix
    product keeps anyway: half the saved memory, and a reverse pass that reads two tensors.

    Returns:
        (gy shaped like y, gJ (w, n1) or None, gc, gs, gbeta: (w,) or None each).
    """
    gd1: List[Tensor] = []
    gd2: List[Tensor] = []
    a = H[:, 0]
    x0 = None
    # A few channels of each order (at most one per input column): explicit per-channel
    # terms stay pointwise.
    if output_only(kind, s):
        f1 = 1 - a * a
        gz = f1 * G[:, 0]
        for i in range(n1):
            g = G[:, 1 + i]
            gz = gz - 2 * a * g * H[:, 1 + i]
            gd1.append(f1 * g)
        for k in range(n2):
            i = sel[0] + k
            g = G[:, 1 + n1 + k]
            e = H[:, 1 + i]  # A1[E]
            gz = gz - 2 * g * (a * H[:, 1 + n1 + k] + e * e)
            gd1[i] = gd1[i] - 4 * a * e * g
            gd2.append(f1 * g)
    else:
        y0, d1, d2 = _rows(first, n1, n2, y, J)
        x0 = y0 if c is None else y0 + c[:, None]
        z = x0
        if s is not None:
            z = x0 * s[:, None] + beta[:, None]
            sc = s[:, None, None]
            d1 = None if d1 is None else d1 * sc
            d2 = None if d2 is None else d2 * sc
        f1, f2, f3 = act_backward(kind, z, a)
        gz = f1 * G[:, 0]
        for i in range(n1):
            g = G[:, 1 + i]
            gz = gz + f2 * g * d1[:, i]
            gd1.append(f1 * g)
        for k in range(n2):
            i = sel[0] + k
            g = G[:, 1 + n1 + k]
            e = d1[:, i]
            term = f3 * e * e
            if d2 is not None:
                term = term + f2 * d2[:, k]
            gz = gz + g * term
            gd1[i] = gd1[i] + 2 * f2 * e * g
            gd2.append(f1 * g)
    gbeta = None if s is None else gz.sum(1)
    gx0 = gz if s is None else gz * s[:, None]
    gc = None if c is None else gx0.sum(1)
    if first:
        gJ = None
        gs = None if s is None else (gz * x0).sum(1)
        if n1:
            gJ = torch.stack([g.sum(1) for g in gd1], 1)  # (w, n1): J is the same at every point
            if s is not None:
                gs = gs + (gJ * J).sum(1)
                gJ = gJ * s[:, None]
        return gx0, gJ, gc, gs, gbeta
    gs = None
    if s is not None:
        gs = (gz * x0).sum(1)
        for i in range(n1):
            gs = gs + (gd1[i] * y[:, 1 + i]).sum(1)
        for k in range(n2):
            gs = gs + (gd2[k] * y[:, 1 + n1 + k]).sum(1)
        gd1 = [g * s[:, None] for g in gd1]
        gd2 = [g * s[:, None] for g in gd2]
    return torch.stack([gx0] + gd1 + gd2, 1), None, gc, gs, gbeta


# Eager versions. Without a compiler every operation is a pass over memory, and the functional
# forms above (kept for the compiler, which fuses them into one loop and would trip over
# in-place writes into views) make about twice as many passes as needed. These compute the same
# values with in-place and ``out=`` operations, writing the channels straight into one
# preallocated (w, C, N) tensor instead of stacking them.

def _tanh_into(z: Tensor, out: Tensor) -> None:
    """out = tanh(z) by the expm1 form of :func:`_tanh`, in place: on this CPU about 40% less
    time than the library's tanh, which is slower per element than the whole formula."""
    e = z.abs().mul_(-2).expm1_()
    torch.div(e, e + 2, out=out)
    out.neg_().copysign_(z)


def forward_eager(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool,
                  y: Tensor, J: Optional[Tensor], c: Optional[Tensor], s: Optional[Tensor],
                  beta: Optional[Tensor]) -> Tensor:
    """:func:`forward`, same arguments and result, for eager execution."""
    y0, d1, d2 = _rows(first, n1, n2, y, J)
    w, N = y0.shape
    H = y0.new_empty((w, 1 + n1 + n2, N))
    z = y0 if c is None else y0 + c[:, None]
    if s is not None:
        z = z * s[:, None] if c is None else z.mul_(s[:, None])
        z.add_(beta[:, None])
        sc = s[:, None, None]
        d1 = None if d1 is None else d1 * sc
        d2 = None if d2 is None else d2 * sc
    a = H[:, 0]
    if kind == "tanh":
        _tanh_into(z, a)
        f1 = torch.addcmul(a.new_ones(()), a, a, value=-1)  # 1 - a^2
        f2 = None
    else:
        value, f1, f2 = act_forward(kind, z)
        a.copy_(value)
    if n1:
        torch.mul(f1[:, None], d1, out=H[:, 1:1 + n1])
    if n2:
        H2 = H[:, 1 + n1:]
        e = d1[:, sel[0]:sel[1]]
        if f2 is None:  # tanh: f'' E^2 = -2 a f' E^2 = -2 a A1[E] E
            torch.mul(a[:, None], H[:, 1 + sel[0]:1 + sel[1]], out=H2)
            H2.mul_(e).mul_(-2)
        else:
            torch.mul(f2[:, None], e, out=H2)
            H2.mul_(e)
        if d2 is not None:
            H2.addcmul_(f1[:, None], d2)
    return H


def backward_eager(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool,
                   G: Tensor, y: Optional[Tensor], J: Optional[Tensor], c: Optional[Tensor],
                   s: Optional[Tensor], beta: Optional[Tensor], H: Tensor):
    """:func:`backward`, same arguments and results, for eager execution. Written out for
    the output-only case (tanh without BN), where it matters; otherwise the functional form."""
    if not output_only(kind, s):
        return backward(kind, n1, n2, sel, first, G, y, J, c, s, beta, H)
    a = H[:, 0]
    f1 = torch.addcmul(a.new_ones(()), a, a, value=-1)  # 1 - a^2
    gY = torch.empty_like(G)
    gz = gY[:, 0]
    torch.mul(f1, G[:, 0], out=gz)
    if n1:
        # dz = f' G0 - 2 a sum_{c >= 1} G_c H_c - 2 sum_k G2_k A1[E]_k^2 (see backward)
        gz.addcmul_(a, (G[:, 1:] * H[:, 1:]).sum(1), value=-2)
        gd1 = gY[:, 1:1 + n1]
        torch.mul(f1[:, None], G[:, 1:1 + n1], out=gd1)
        if n2:
            E = H[:, 1 + sel[0]:1 + sel[1]]
            G2 = G[:, 1 + n1:]
            GE = G2 * E
            for k in range(n2):
                gz.addcmul_(GE[:, k], E[:, k], value=-2)
            gd1[:, sel[0]:sel[1]].addcmul_(a[:, None], GE, value=-4)
            torch.mul(f1[:, None], G2, out=gY[:, 1 + n1:])
    gc = None if c is None else gz.sum(1)
    if first:
        gJ = gY[:, 1:1 + n1].sum(2) if n1 else None  # (w, n1): J is the same at every point
        return gz, gJ, gc, None, None
    return gY, None, gc, None, None



def linear_rows(H: Tensor, W: Tensor) -> Tensor:
    """(w_in, C, N) -> (w_out, C, N): every channel through one matrix product (no bias)."""
    w, C, N = H.shape
    return (W @ H.reshape(w, C * N)).view(W.shape[0], C, N)
