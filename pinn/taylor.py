"""Forward-mode ("Taylor") input derivatives of :class:`pinn.nn.mlp.MLP`, for training.

:func:`pinn.derivatives.compute_derivatives` obtains Ux, Ut by a reverse pass per output and
Uxx, Utt by a reverse pass over that reverse pass; training then differentiates the whole nest
once more. Here every block instead carries the truncated Taylor expansion of its activations,

    h, h_x, h_t, h_xx, h_tt            (only the channels the caller needs),

through the network in one forward pass. An activation f maps them with its closed-form
derivatives,

    a = f(z),  a_x = f'(z) z_x,  a_xx = f'(z) z_xx + f''(z) z_x^2      (same for t),

and a Linear layer maps all channels with one matrix product (its bias enters the value channel
only). The outputs are ordinary differentiable functions of the parameters, so ``loss.backward()``
is a single first-order reverse pass. That pass is written out here (:func:`_pw_backward`), not
left to autograd, and everything except the matrix products is a pure pointwise function that
``torch.compile`` fuses into one loop per block and direction (uncompiled, in-place versions
of the same maps run instead).

Batch normalization with constant statistics (``detached``, ``frozen``, or any mode under
``eval()``) is a per-feature affine map: the value channel becomes ``(h - mean) * s + beta`` and
each derivative channel ``d * s``, with ``s = weight / sqrt(var + eps)``. The statistics come
from :meth:`pinn.nn.norm.BatchNorm.statistics` called on the layer's value rows, between the
block's matrix product and its pointwise map, outside any compiled code, so running-statistics
updates, sharing within a step and calibration behave exactly as in ``model(xt)``. ``batch``
mode couples the points of a batch (its derivatives are not per point) and is refused; see
:func:`unsupported_reason`.

Two execution paths give the same numbers:

- networks without BN (and x, t that need no gradient): the whole network is one autograd
  node whose forward and reverse passes are two pure functions (two compiled graphs);
- otherwise block by block, one autograd node per pointwise map, BN statistics in between.

The engine's tensors are few and large, so on first use it asks glibc to keep freed blocks
for reuse (:func:`tune_allocator`; set :data:`ALLOCATOR_TUNING` to False to opt out).

On a 2-core CPU (torch 2.13) a training step (derivatives, residual, backward, Adam) of
Raissi's Burgers network (8 x 20 tanh, float32, N = 10,000) runs about 1.9x faster compiled
than reverse-over-reverse autograd (1.2-1.5x eager), and of the seed network
(8 x [80, BN, GELU] -> 4, float64, N = 1,000) about 5x faster eager and 8x compiled;
``python -m pinn.bench`` measures it.
"""
from __future__ import annotations

import ctypes
import logging
import math
import time
import types
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pinn.derivatives import DERIVATIVE_KEYS
from pinn.nn.embedding import network_request
from pinn.nn.mlp import MLP, Sin
from pinn.nn.norm import BatchNorm

__all__ = ["unsupported_reason", "taylor_derivatives", "channels_for", "compile_status",
           "compile_events", "compile_seconds", "reset_compiled", "tune_allocator", "allocator_status"]

log = logging.getLogger(__name__)

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# -- network structure -----------------------------------------------------------------------

def _activation_kind(m: nn.Module) -> Optional[str]:
    if isinstance(m, nn.Tanh):
        return "tanh"
    if isinstance(m, Sin):
        return "sin"
    if isinstance(m, nn.SiLU):
        return "silu"
    if isinstance(m, nn.GELU) and m.approximate == "none":
        return "gelu"
    return None


def _blocks(model: nn.Module) -> Tuple[Optional[list], Optional[str]]:
    """[(linear, bn or None, activation kind)] per hidden block, or (None, reason)."""
    if not isinstance(model, MLP):
        return None, f"{type(model).__name__} is not a pinn.nn.mlp.MLP"
    if getattr(model, "n_in", 2) != 2:
        return None, (f"the network takes {model.n_in} input columns; the taylor engine "
                      "handles (x, t) only so far")
    blocks = []
    for i, block in enumerate(model.hidden):
        layers = list(block) if isinstance(block, nn.Sequential) else [block]
        if len(layers) not in (2, 3) or not isinstance(layers[0], nn.Linear):
            return None, f"hidden block {i} is not [Linear, (BatchNorm), activation]"
        bn = layers[1] if len(layers) == 3 else None
        if bn is not None and not isinstance(bn, BatchNorm):
            return None, f"hidden block {i}: {type(bn).__name__} is not pinn.nn.norm.BatchNorm"
        kind = _activation_kind(layers[-1])
        if kind is None:
            return None, (f"hidden block {i}: activation {layers[-1]!r} has no closed-form "
                          f"derivatives here (tanh, exact GELU, sin, SiLU)")
        if bn is not None and bn.effective_mode == "batch":
            return None, (f"hidden block {i}: BatchNorm in batch mode couples the points of a "
                          f"batch (no per-point derivatives); use autograd, or bn.mode "
                          f"detached/frozen")
        blocks.append((layers[0], bn, kind))
    if not isinstance(model.head, nn.Linear):
        return None, "the head is not a Linear layer"
    return blocks, None


def unsupported_reason(model: nn.Module) -> Optional[str]:
    """Why :func:`taylor_derivatives` cannot handle ``model`` in its current mode, or ``None``.

    Args:
        model: the network (typically a :class:`pinn.nn.mlp.MLP`).

    Returns:
        ``None`` when supported, else a one-line reason (e.g. BatchNorm in ``batch`` mode while
        training: the statistics are differentiated through, which couples the points).
    """
    return _blocks(model)[1]


def channels_for(needed: Iterable[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The derivative channels a request needs: (first, second) variable names.

    ``Uxx`` needs the ``x`` channel even when ``Ux`` is not returned.

    Args:
        needed: a subset of :data:`pinn.derivatives.DERIVATIVE_KEYS`.

    Returns:
        (firsts, seconds), e.g. (("x", "t"), ("x",)) for Burgers (U, Ux, Ut, Uxx).
    """
    needed = set(needed)
    unknown = needed - set(DERIVATIVE_KEYS)
    if unknown:
        raise ValueError(f"unknown derivative(s) {sorted(unknown)}: allowed {DERIVATIVE_KEYS}")
    seconds = tuple(v for v in "xt" if f"U{v}{v}" in needed)
    firsts = tuple(v for v in "xt" if f"U{v}" in needed or v in seconds)
    return firsts, seconds


# -- the per-layer arithmetic (pure tensor functions: these are what gets compiled) ----------

def _tanh(z: Tensor) -> Tensor:
    """tanh through expm1: tanh|z| = -e / (2 + e) with e = expm1(-2|z|) in (-1, 0].

    The vectorized exponential costs about a third of the vectorized tanh on this CPU; this
    form keeps full relative precision near 0 and never overflows."""
    e = torch.expm1(-2 * z.abs())
    return torch.copysign(-e / (2 + e), z)


def _act_forward(kind: str, z: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
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


def _act_backward(kind: str, z: Tensor, a: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
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


def _pw_forward(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool, y: Tensor,
                J: Optional[Tensor], c: Optional[Tensor], s: Optional[Tensor],
                beta: Optional[Tensor]) -> Tensor:
    """Bias, batch normalization with constant statistics and the activation, on all channels.

    Args:
        kind: activation kind.
        n1, n2: numbers of first- and second-derivative channels.
        sel: (start, stop) of the first-derivative channels that the second-derivative ones
            belong to (Uxx needs x, Utt needs t).
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
    a, f1, f2 = _act_forward(kind, z)
    # One (w, N) piece per channel, stacked: the compiler then fuses all channels into one
    # loop over (w, N) that evaluates the activation once per element.
    parts = [a] + [f1 * d1[:, i] for i in range(n1)]
    for k in range(n2):
        e = d1[:, sel[0] + k]
        second = f2 * (e * e)
        parts.append(second if d2 is None else second + f1 * d2[:, k])
    return torch.stack(parts, 1)


def _output_only(kind: str, s: Optional[Tensor]) -> bool:
    """Whether the reverse pass of a block needs only its output H (see :func:`_pw_backward`)."""
    return kind == "tanh" and s is None


def _pw_backward(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool, G: Tensor,
                 y: Optional[Tensor], J: Optional[Tensor], c: Optional[Tensor],
                 s: Optional[Tensor], beta: Optional[Tensor], H: Tensor):
    """Reverse pass of :func:`_pw_forward`, given its output H and the gradient G (w, C, N).

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
    # At most two channels of each order: explicit per-channel terms stay pointwise.
    if _output_only(kind, s):
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
        f1, f2, f3 = _act_backward(kind, z, a)
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


def _pw_forward_eager(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool,
                      y: Tensor, J: Optional[Tensor], c: Optional[Tensor], s: Optional[Tensor],
                      beta: Optional[Tensor]) -> Tensor:
    """:func:`_pw_forward`, same arguments and result, for eager execution."""
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
        value, f1, f2 = _act_forward(kind, z)
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


def _pw_backward_eager(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool,
                       G: Tensor, y: Optional[Tensor], J: Optional[Tensor], c: Optional[Tensor],
                       s: Optional[Tensor], beta: Optional[Tensor], H: Tensor):
    """:func:`_pw_backward`, same arguments and results, for eager execution. Written out for
    the output-only case (tanh without BN), where it matters; otherwise the functional form."""
    if not _output_only(kind, s):
        return _pw_backward(kind, n1, n2, sel, first, G, y, J, c, s, beta, H)
    a = H[:, 0]
    f1 = torch.addcmul(a.new_ones(()), a, a, value=-1)  # 1 - a^2
    gY = torch.empty_like(G)
    gz = gY[:, 0]
    torch.mul(f1, G[:, 0], out=gz)
    if n1:
        # dz = f' G0 - 2 a sum_{c >= 1} G_c H_c - 2 sum_k G2_k A1[E]_k^2 (see _pw_backward)
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


class _Pointwise(torch.autograd.Function):
    """One block's pointwise map as an autograd node: ``fwd``/``bwd`` are a forward and a
    reverse pointwise function (see :func:`_maps`) with the static arguments bound, compiled
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


def _linear_rows(H: Tensor, W: Tensor) -> Tensor:
    """(w_in, C, N) -> (w_out, C, N): every channel through one matrix product (no bias)."""
    w, C, N = H.shape
    return (W @ H.reshape(w, C * N)).view(W.shape[0], C, N)


# -- the whole network as one function (no batch normalization) ------------------------------
#
# Without BN nothing has to happen between the layers, so the forward pass over all blocks and
# its reverse pass are two pure functions of the parameters: one autograd node for the whole
# network, and, compiled, two graphs per shape instead of two per block (less dispatch, and the
# head's rank-1 products fuse into the neighbouring pointwise loops).

def _chain_forward(kinds: Tuple[str, ...], idx: Tuple[int, ...], n2: int, sel: Tuple[int, int],
                   eager: bool, xt: Tensor, center: Tensor, scale: Tensor,
                   params: List[Tensor]):
    """All blocks and the head on all channels.

    Args:
        kinds: activation kind per hidden block.
        idx: input columns (0 = x, 1 = t) of the first-derivative channels.
        n2, sel: second-derivative channels, as in :func:`_pw_forward`.
        eager: use the eager pointwise maps (else the compiler-friendly ones).
        xt: (N, 2) points; center, scale: (2,) the input map.
        params: [W_0, b_0, ..., W_{L-1}, b_{L-1}, W_head, b_head].

    Returns:
        (outputs, saved): outputs = [U, D_1, ...] each (N, n_out); saved = tensors for
        :func:`_chain_backward`.
    """
    n1 = len(idx)
    pw = _pw_forward_eager if eager else _pw_forward
    h0 = (xt - center) * scale  # (N, 2)
    W0 = params[0]
    # W0 @ h0^T with an inner dimension of 2, written pointwise so that it fuses into the input
    # block's pointwise map (a BLAS call would write and re-read a (w, N) tensor).
    y = W0[:, 0:1] * h0[:, 0] + W0[:, 1:2] * h0[:, 1]  # (w, N)
    J = (W0 * scale)[:, list(idx)] if n1 else None  # (w, n1)
    H = pw(kinds[0], n1, n2, sel, True, y, J, params[1], None, None)
    saved = [h0, None if _output_only(kinds[0], None) else y, H]
    for i in range(1, len(kinds)):
        y = _linear_rows(H, params[2 * i])
        H = pw(kinds[i], n1, n2, sel, False, y, None, params[2 * i + 1], None, None)
        saved += [None if _output_only(kinds[i], None) else y, H]
    Y = _linear_rows(H, params[-2])  # (n_out, C, N)
    outs = [(Y[:, 0].t() + params[-1]).contiguous()]
    outs += [Y[:, k].t().contiguous() for k in range(1, Y.shape[1])]
    return outs, saved


def _chain_backward(kinds: Tuple[str, ...], idx: Tuple[int, ...], n2: int, sel: Tuple[int, int],
                    eager: bool, grads: List[Tensor], scale: Tensor, params: List[Tensor],
                    saved: List[Tensor]) -> List[Tensor]:
    """Reverse pass of :func:`_chain_forward`: the gradient of every parameter, in order."""
    n1 = len(idx)
    pwb = _pw_backward_eager if eager else _pw_backward
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
    # gW0 = gy0 @ h0 with an inner dimension of 2: as two row sums it fuses into the reverse
    # pointwise map of the input block (which reduces over the points for the bias anyway).
    cols = [(gy0 * h0[:, 0]).sum(1), (gy0 * h0[:, 1]).sum(1)]
    for k, j in enumerate(idx):  # J[:, k] = W0[:, j] * scale[j]
        cols[j] = cols[j] + gJ[:, k] * scale[j]
    out[0] = torch.stack(cols, 1)
    out[1] = gc
    return out


class _Chain(torch.autograd.Function):
    """The whole network (no BN) as one autograd node; ``fwd``/``bwd`` are
    :func:`_chain_forward`/:func:`_chain_backward` with static arguments bound."""

    @staticmethod
    def forward(ctx, fwd, bwd, xt, center, scale, *params):
        outs, saved = fwd(xt, center, scale, list(params))
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


# -- compilation ----------------------------------------------------------------------------

def _fresh(fn: Callable) -> Callable:
    """A copy of ``fn`` with its own code object: the compiler caches compiled graphs (and caps
    their number) per code object, so each bound pointwise map gets its own cache."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def _signature(v):
    """A hashable summary (shapes, dtypes, nesting) of a call's arguments."""
    if isinstance(v, Tensor):
        return (tuple(v.shape), v.dtype)
    if isinstance(v, (list, tuple)):
        return tuple(_signature(u) for u in v)
    return v


def _graph_count() -> Optional[int]:
    """Graphs compiled so far in this process (None where the counter is not available)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - diagnostics only
        return None


class _Compiled:
    """A pure tensor function run through ``torch.compile``, with an automatic eager fallback.

    The first call with each new argument signature (shapes, dtypes) is timed; when it compiled
    a graph, the time (compilation plus one run) is recorded. Any exception from the compiler
    (none installed, an unsupported operation, failed code generation) switches to ``eager``
    (the same function written for eager execution) for good, and every function compiled
    later in the process runs eagerly from the start: a compiler that failed once is not
    retried (each try would cost seconds). The reason is recorded and logged once. The
    functions have no side effects, so the failed call is simply repeated.
    """

    def __init__(self, name: str, fn: Callable, eager: Callable):
        self.name = name
        self.eager = eager  # same results as fn, written for eager execution
        self.compiled: Optional[Callable] = None
        self.seen: set = set()
        if _broken_compiler():
            return
        try:
            self.compiled = torch.compile(_fresh(fn), fullgraph=True)
        except Exception as e:  # noqa: BLE001 - whatever the failure, run eagerly
            self._fail(e)

    def _fail(self, e: BaseException, seconds: Optional[float] = None) -> None:
        msg = str(e).strip()
        detail = f"{type(e).__name__}: {msg.splitlines()[0] if msg else ''}"[:300]
        self.compiled = None
        first = not _broken_compiler()
        _EVENTS.append({"function": self.name, "ok": False, "seconds": seconds, "detail": detail})
        if first:
            log.warning("taylor: torch.compile failed for %s; running eagerly from now on (%s)",
                        self.name, detail)

    def __call__(self, *args):
        if self.compiled is None:
            return self.eager(*args)
        sig = _signature(args)
        if sig in self.seen:
            return self.compiled(*args)
        if _broken_compiler():  # another function's compilation failed: do not retry
            self.compiled = None
            return self.eager(*args)
        before, t0 = _graph_count(), time.perf_counter()
        try:
            out = self.compiled(*args)
        except Exception as e:  # noqa: BLE001
            self._fail(e, time.perf_counter() - t0)
            return self.eager(*args)
        seconds = time.perf_counter() - t0
        self.seen.add(sig)
        after = _graph_count()
        if before is None or after is None or after > before:
            shapes = ", ".join(str(tuple(a.shape)) for a in _flatten(args))
            _EVENTS.append({"function": self.name, "ok": True, "seconds": seconds,
                            "detail": shapes})
            log.info("taylor: compiled %s in %.1f s", self.name, seconds)
        return out


def _broken_compiler() -> bool:
    """Whether a compilation has failed in this process (see :class:`_Compiled`)."""
    return any(not e["ok"] for e in _EVENTS)


def _flatten(v) -> List[Tensor]:
    """The tensors in a nest of lists and tuples, in order."""
    if isinstance(v, Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [u for w in v for u in _flatten(w)]
    return []


_EVENTS: List[dict] = []
_CACHE: Dict[tuple, Tuple[Callable, Callable]] = {}


def compile_events() -> List[dict]:
    """Every compilation so far: ``function`` (which pointwise map), ``ok``, ``seconds``
    (compilation plus the first run; for a failure the time the attempt took, None when it
    failed before running) and ``detail`` (argument shapes, or the error that caused the eager
    fallback)."""
    return [dict(e) for e in _EVENTS]


def compile_seconds() -> float:
    """Seconds spent compiling so far in this process: each compilation's time (including one
    run of the compiled function) and the time lost to failed attempts."""
    return float(sum(e["seconds"] or 0.0 for e in _EVENTS))


def compile_status(since: int = 0) -> str:
    """One line on compilation: what was compiled after the first ``since`` events of
    :func:`compile_events` (with the compile time), graphs reused from earlier in this process,
    or falling back to eager and why (a fallback lasts for the process)."""
    ok = [e for e in _EVENTS[since:] if e["ok"]]
    failed = [e for e in _EVENTS if not e["ok"]]
    parts = []
    if ok:
        parts.append(f"compiled {len(ok)} graph(s) in {sum(e['seconds'] for e in ok):.1f} s")
    elif any(e["ok"] for e in _EVENTS[:since]):
        parts.append("reused the graphs compiled earlier in this process")
    if failed:
        lost = sum(e["seconds"] or 0.0 for e in failed)
        parts.append(f"eager fallback ({lost:.1f} s lost): {failed[0]['detail']}")
    return "; ".join(parts) or "eager (nothing compiled)"


def reset_compiled() -> None:
    """Forget the compiled functions and the recorded events."""
    _CACHE.clear()
    _EVENTS.clear()


def _maps(kind: str, n1: int, n2: int, sel: Tuple[int, int], first: bool,
          compile: bool) -> Tuple[Callable, Callable]:
    """The (forward, backward) pointwise maps for one block type, compiled if asked."""
    key = (kind, n1, n2, sel, first, compile)
    if key not in _CACHE:
        def bind(fwd_impl, bwd_impl):
            def fwd(y, J, c, s, beta):
                return fwd_impl(kind, n1, n2, sel, first, y, J, c, s, beta)

            def bwd(G, y, J, c, s, beta, H):
                return bwd_impl(kind, n1, n2, sel, first, G, y, J, c, s, beta, H)
            return fwd, bwd

        fwd, bwd = bind(_pw_forward_eager, _pw_backward_eager)
        if compile:
            name = f"{kind} {'input' if first else 'hidden'} block, {n1}+{n2} derivative channels"
            cfwd, cbwd = bind(_pw_forward, _pw_backward)
            fwd, bwd = (_Compiled(f"{name}, forward", cfwd, fwd),
                        _Compiled(f"{name}, backward", cbwd, bwd))
        _CACHE[key] = (fwd, bwd)
    return _CACHE[key]


def _chain_maps(kinds: Tuple[str, ...], idx: Tuple[int, ...], n2: int, sel: Tuple[int, int],
                compile: bool) -> Tuple[Callable, Callable]:
    """The (forward, backward) whole-network functions for one architecture and request."""
    key = ("chain", kinds, idx, n2, sel, compile)
    if key not in _CACHE:
        def bind(eager: bool):
            def fwd(xt, center, scale, params):
                return _chain_forward(kinds, idx, n2, sel, eager, xt, center, scale, params)

            def bwd(grads, scale, params, saved):
                return _chain_backward(kinds, idx, n2, sel, eager, grads, scale, params, saved)
            return fwd, bwd

        fwd, bwd = bind(True)
        if compile:
            name = f"network {'-'.join(kinds)}, {len(idx)}+{n2} derivative channels"
            cfwd, cbwd = bind(False)
            fwd, bwd = (_Compiled(f"{name}, forward", cfwd, fwd),
                        _Compiled(f"{name}, backward", cbwd, bwd))
        _CACHE[key] = (fwd, bwd)
    return _CACHE[key]


# -- the allocator ----------------------------------------------------------------------------
#
# This engine allocates fewer but larger tensors than reverse mode (a block's channels are one
# (w, C, N) tensor). With glibc's default, dynamic thresholds a training step's freed memory
# tends to be handed back to the system at the end of each step (heap trimming, or munmap of
# blocks above the mmap threshold) and faulted in again, zero-filled, in the next: on the
# project's default run (4 x 32 tanh, 2,000 points, float32) that was 1.4 million page faults
# in 600 steps and made this engine slower than reverse mode (125 against 162 steps/s);
# keeping freed blocks in the heap made it faster (206 against 187). jemalloc or tcmalloc do
# the same when preloaded; ``mallopt`` is the in-process equivalent.

ALLOCATOR_TUNING = True  # set False before the first call to leave the allocator alone
_MMAP_THRESHOLD = 32 * 1024 * 1024  # the ceiling of glibc's own dynamic threshold
_TRIM_THRESHOLD = 128 * 1024 * 1024
_allocator_status: Optional[str] = None


def tune_allocator() -> str:
    """Make glibc keep freed blocks up to 32 MB in its heap for reuse (``mallopt``), once per
    process; later calls only return the status.

    Process-wide: it speeds up reverse mode too, and lets the process hold up to 128 MB of
    freed memory at the top of its heap. Called by :func:`taylor_derivatives` on first use
    unless :data:`ALLOCATOR_TUNING` is False.

    Returns:
        a one-line status: what was set, or why nothing was (not glibc, disabled).
    """
    global _allocator_status
    if _allocator_status is None:
        try:
            libc = ctypes.CDLL(None)
            mallopt = libc.mallopt
            # M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1; each returns 1 on success.
            ok = mallopt(-3, _MMAP_THRESHOLD) == 1 and mallopt(-1, _TRIM_THRESHOLD) == 1
            _allocator_status = (f"glibc: mmap threshold {_MMAP_THRESHOLD >> 20} MB, trim "
                                 f"threshold {_TRIM_THRESHOLD >> 20} MB" if ok
                                 else "mallopt refused the thresholds; allocator unchanged")
        except Exception:  # noqa: BLE001 - no C library to talk to: leave it be
            _allocator_status = "not glibc (no mallopt); allocator unchanged"
        log.info("taylor: allocator: %s", _allocator_status)
    return _allocator_status


def allocator_status() -> str:
    """What :func:`tune_allocator` did in this process, or that it has not run."""
    return _allocator_status or "unchanged (tune_allocator not called)"


# -- the engine -----------------------------------------------------------------------------

def taylor_derivatives(model: nn.Module, x: Tensor, t: Tensor,
                       needed: Iterable[str] = DERIVATIVE_KEYS,
                       compile: bool = False) -> Dict[str, Tensor]:
    """U and the input derivatives that ``needed`` names, in one forward pass.

    Same contract as ``pinn.derivatives.compute_derivatives(model, x, t, needed,
    create_graph=True)``: the results are differentiable with respect to the parameters (and to
    x, t), so a loss built from them trains with ``loss.backward()``. Only the channels that
    ``needed`` requires are propagated (Burgers' U, Ux, Ut, Uxx carry no t-second channel).
    BatchNorm statistics come from each layer's ``statistics`` (running-statistics updates,
    sharing within a step and calibration happen exactly as in ``model(xt)``).

    Args:
        model: a :class:`pinn.nn.mlp.MLP` that :func:`unsupported_reason` accepts.
        x, t: (N, 1) each, in the model's dtype.
        needed: a subset of :data:`pinn.derivatives.DERIVATIVE_KEYS`; ``U`` is always returned.
        compile: run the work through ``torch.compile``: for a network without BN the
            whole forward pass and its reverse pass (two graphs; the matrix products inside
            them still call the BLAS), otherwise the pointwise map of each block and its
            reverse pass, with the matrix products and the BN statistics outside. The first
            call per shape pays the compile time (seconds; a second shape compiles once more
            with a symbolic batch size); a failing compiler falls back to eager, recorded in
            :func:`compile_status`. On a 2-core CPU compiling pays for a Burgers-size network
            (8 x 20 tanh, 10,000 points: 1.5x faster than eager) after about a thousand steps.

    Returns:
        dict mapping ``U`` and each key of ``needed`` to an (N, n_out) tensor. Their reverse
        pass is written out and first order: ``backward()`` of a loss built from them works,
        differentiating that gradient once more (double backward) raises.

    Raises:
        ValueError: unsupported network (see :func:`unsupported_reason`), unknown keys or bad
            shapes.
    """
    blocks, reason = _blocks(model)
    if reason is not None:
        raise ValueError(f"taylor derivatives: {reason}")
    if ALLOCATOR_TUNING and _allocator_status is None:
        tune_allocator()
    if x.shape != t.shape or x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"x and t must both be (N, 1); got {tuple(x.shape)} and {tuple(t.shape)}")
    needed = set(needed) | {"U"}
    transform = getattr(model, "output_transform", None)
    requested = needed
    if transform is not None:  # the network's own derivatives, then the product rule
        needed = network_request(needed, transform)
    firsts, seconds = channels_for(needed)
    n1, n2 = len(firsts), len(seconds)
    sel = (firsts.index(seconds[0]), firsts.index(seconds[-1]) + 1) if n2 else (0, 0)
    first_idx = ["xt".index(v) for v in firsts]
    kinds = tuple(kind for _, _, kind in blocks)

    embedding = getattr(model, "embedding", None)
    if (embedding is None and not any(bn is not None for _, bn, _ in blocks)
            and all(lin.bias is not None for lin, _, _ in blocks) and model.head.bias is not None
            and not (x.requires_grad or t.requires_grad)):
        fwd, bwd = _chain_maps(kinds, tuple(first_idx), n2, sel, compile)
        params = [p for lin, _, _ in blocks for p in (lin.weight, lin.bias)]
        params += [model.head.weight, model.head.bias]
        outs = _Chain.apply(fwd, bwd, torch.cat([x, t], dim=1), model.in_center.to(x.dtype),
                            model.in_scale.to(x.dtype), *params)
    else:
        second_idx = ["xt".index(v) for v in seconds]
        outs = _layered(blocks, first_idx, second_idx, n1, n2, sel, x, t, model, compile)
    out = {"U": outs[0]}
    names = [f"U{v}" for v in firsts] + [f"U{v}{v}" for v in seconds]
    for k, name in enumerate(names):
        if name in needed:
            out[name] = outs[1 + k]
    if transform is not None:
        out = transform.apply_to_derivatives(x, t, out, requested)
    return out


def _layered(blocks, first_idx, second_idx, n1, n2, sel, x, t, model,
             compile) -> List[Tensor]:
    """Block by block, one autograd node per pointwise map; BN statistics are taken between a
    block's matrix product and its pointwise map. Returns [U, D_1, ...], each (N, n_out)."""
    H = None
    embedding = getattr(model, "embedding", None)
    scale = model.in_scale.to(x.dtype)
    h0 = (torch.cat([x, t], dim=1) - model.in_center.to(x.dtype)) * scale  # (N, 2)
    for i, (lin, bn, kind) in enumerate(blocks):
        W = lin.weight
        J = None
        first = i == 0 and embedding is None
        if i == 0 and embedding is not None:
            # Fixed input features with their closed-form derivative rows (F, C, N): the
            # first block then takes full rows like any hidden block.
            E = embedding.taylor_rows(h0, scale, tuple(first_idx), tuple(second_idx))
            y = _linear_rows(E, W)  # (w, C, N)
            y0 = y[:, 0]
        elif i == 0:
            y = W @ h0.t()  # (w, N)
            if n1:
                J = (W * scale)[:, first_idx]  # (w, n1): d(W h0)/d(x, t)
            y0 = y
        else:
            y = _linear_rows(H, W)  # (w, C, N)
            y0 = y[:, 0]
        c, s, beta = lin.bias, None, None
        if bn is not None:
            with torch.no_grad():
                h = y0 if lin.bias is None else y0 + lin.bias[:, None]
            mean, var = bn.statistics(h.t())  # the layer input as model(xt) sees it, (N, w)
            s = torch.rsqrt(var + bn.eps) * bn.weight
            c = -mean if lin.bias is None else lin.bias - mean
            beta = bn.bias
        fwd, bwd = _maps(kind, n1, n2, sel, first, compile)
        H = _Pointwise.apply(y, J, c, s, beta, fwd, bwd, _output_only(kind, s))

    Y = _linear_rows(H, model.head.weight)  # (n_out, C, N)
    U = Y[:, 0].t()
    outs = [(U if model.head.bias is None else U + model.head.bias).contiguous()]
    return outs + [Y[:, k].t().contiguous() for k in range(1, Y.shape[1])]
