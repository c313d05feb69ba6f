"""Forward-mode ("Taylor") input derivatives of :class:`pinn.nn.mlp.MLP`.

:func:`pinn.derivatives.compute_derivatives` obtains Ux, Ut by a reverse pass per output and
Uxx, Utt by a reverse pass over that reverse pass; training then differentiates the whole
nest once more. This module instead pushes the truncated Taylor expansion of every hidden
activation through the network in one forward pass: each layer carries the channels

    h, h_x, h_t, h_xx, h_tt            (only those the caller needs)

stacked along the batch dimension as one (C, N, width) tensor, so a Linear layer is one matrix
product for all channels (its bias enters the value channel only), and an activation f maps them
with its closed-form derivatives:

    a = f(z),  a_x = f'(z) z_x,  a_xx = f'(z) z_xx + f''(z) z_x^2   (same for t).

The result is an ordinary differentiable expression of the parameters, so ``loss.backward()``
is a single first-order reverse pass, and ``torch.compile`` can fuse the per-layer arithmetic
(it cannot compile the double-backward graphs of the reverse-over-reverse engine).

Batch normalization with constant statistics (``detached``, ``frozen``, or any mode under
``eval()``) is a per-feature affine map: the value channel becomes ``(h - mean) * s + beta`` and
each derivative channel ``d * s``, with ``s = weight * rsqrt(var + eps)``. The statistics come
from :meth:`pinn.nn.norm.BatchNorm.statistics` called on the layer's value rows, so running-stat
updates, sharing within a step and calibration behave exactly as in ``model(xt)``. ``batch``
mode couples the points of a batch (its derivatives are not per point) and is refused.
"""
from __future__ import annotations

import logging
import math
import time
import types
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from pinn.derivatives import DERIVATIVE_KEYS
from pinn.nn.mlp import MLP, Sin
from pinn.nn.norm import BatchNorm

__all__ = ["unsupported_reason", "taylor_derivatives", "compile_status", "compile_events",
           "channels_for"]

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


# -- the per-layer arithmetic (pure tensor functions: these are what gets compiled) -----------

def _tanh(z: Tensor) -> Tensor:
    """tanh through expm1: tanh|z| = -e / (2 + e) with e = expm1(-2|z|) in (-1, 0].

    The vectorized exponential costs about a third of the vectorized tanh on this CPU, and this
    form keeps full relative precision near 0 and never overflows."""
    e = torch.expm1(-2 * z.abs())
    return torch.copysign(-e / (2 + e), z)


def _activation(kind: str, z: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
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


# Layout. Activations are kept feature-major, (w, C, N): feature j, channel c, point n. A
# Linear layer is then W @ H.view(w_in, C * N), one matrix product whose long dimension is the
# contiguous one (on this CPU about 20% faster than (C * N, w) @ W^T for w = 20..80), and the
# pointwise maps run over contiguous rows of N points with a per-row bias.

def _pointwise(kind: str, n2: int, sel: Tuple[int, int], y0: Tensor, d1: Optional[Tensor],
               d2: Optional[Tensor], bias: Optional[Tensor], bn: Optional[tuple]) -> Tensor:
    """Bias, batch normalization with constant statistics and the activation, on all channels.

    Args:
        kind: activation kind.
        n2: number of second-derivative channels.
        sel: (start, stop) of the first-derivative channels that the second-derivative
            channels belong to (Uxx needs x, Utt needs t).
        y0: (w, N) value rows of the linear map, bias not yet added.
        d1: (w, n1, N or 1) first-derivative rows (one column after the first layer, where
            they do not depend on the point), or None when n1 = 0.
        d2: (w, n2, N) second-derivative rows, or None where they are zero (first layer).
        bias: (w,) or None.
        bn: None, or (mean, var, eps, weight, beta) with mean, var constants (w,).

    Returns:
        (w, 1 + n1 + n2, N) stacked activations [a; a_first...; a_second...].
    """
    z = y0 if bias is None else y0 + bias[:, None]
    if bn is not None:
        mean, var, eps, weight, beta = bn
        s = (torch.rsqrt(var + eps) * weight)[:, None]
        z = (z - mean[:, None]) * s + beta[:, None]
        s = s[:, None]
        d1 = None if d1 is None else d1 * s
        d2 = None if d2 is None else d2 * s
    a, f1, f2 = _activation(kind, z)
    parts = [a[:, None]]
    if d1 is not None:
        f1 = f1[:, None]
        parts.append(f1 * d1)
        if n2:
            e = d1[:, sel[0]:sel[1]]
            second = f2[:, None] * (e * e)
            if d2 is not None:
                second = second + f1 * d2
            parts.append(second)
    return torch.cat(parts, 1)


def _input_rows(xt: Tensor, center: Tensor, scale: Tensor, W: Tensor,
                first_idx: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
    """First Linear layer on the scaled input: value rows (w, N), bias not added, and the
    first-derivative rows (w, n1, 1) = d/d(x, t)_i of W (scaled input), the same for every
    point. Second-derivative rows are zero (the input map is affine)."""
    y0 = W @ ((xt - center) * scale).t()
    if not first_idx:
        return y0, None
    J = W * scale  # (w, 2): column i is d y / d (x, t)_i
    return y0, J[:, list(first_idx), None]


def _linear_rows(H: Tensor, W: Tensor) -> Tensor:
    """(w_in, C, N) -> (w_out, C, N): every channel through one matrix product (no bias)."""
    w, C, N = H.shape
    return (W @ H.reshape(w, C * N)).view(W.shape[0], C, N)


def _head(H: Tensor, W: Tensor, b: Optional[Tensor]) -> Tuple[Tensor, List[Tensor]]:
    """Linear head on all channels: U (N, n_out) and the derivative channels, each (N, n_out)."""
    Y = _linear_rows(H, W)  # (n_out, C, N)
    U = Y[:, 0].t() if b is None else Y[:, 0].t() + b
    return U.contiguous(), [Y[:, c].t().contiguous() for c in range(1, Y.shape[1])]


def _chain(kinds: Tuple[str, ...], first_idx: Tuple[int, ...], n2: int, sel: Tuple[int, int],
           xt: Tensor, center: Tensor, scale: Tensor, weights: List[Tensor],
           biases: List[Optional[Tensor]], bns: List[Optional[tuple]], head_w: Tensor,
           head_b: Optional[Tensor]) -> Tuple[Tensor, List[Tensor]]:
    """The whole network on all channels, BN statistics given: U and derivative channels."""
    n1 = len(first_idx)
    y0, d1 = _input_rows(xt, center, scale, weights[0], first_idx)
    H = _pointwise(kinds[0], n2, sel, y0, d1, None, biases[0], bns[0])
    for i in range(1, len(kinds)):
        Y = _linear_rows(H, weights[i])
        H = _pointwise(kinds[i], n2, sel, Y[:, 0], Y[:, 1:1 + n1] if n1 else None,
                       Y[:, 1 + n1:] if n2 else None, biases[i], bns[i])
    return _head(H, head_w, head_b)


# -- compilation ----------------------------------------------------------------------------

def _fresh(fn: Callable) -> Callable:
    """A copy of ``fn`` with its own code object: the compiler caches (and limits the number of
    recompilations) per code object, so each network configuration gets its own cache."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


class _Compiled:
    """One compiled pure function with an automatic eager fallback.

    The first call for each new argument signature (shapes, dtypes, grad mode) is a probe: the
    compiled function runs forward and backward on detached copies of the arguments, which
    triggers both compilations; its wall time is recorded as the compile time. Any exception
    (no compiler, unsupported operation, failed code generation) switches this function to eager
    for good and is recorded once. The probe touches no module state, so a failed attempt leaves
    nothing to undo.
    """

    def __init__(self, name: str, fn: Callable):
        self.name = name
        self.eager = fn
        self.compiled: Optional[Callable] = None
        self.failed: Optional[str] = None
        self.seen: set = set()
        try:
            self.compiled = torch.compile(_fresh(fn), fullgraph=True, dynamic=False,
                                          options=_COMPILE_OPTIONS or None)
        except Exception as e:  # noqa: BLE001 - any failure means: run eagerly
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        self.compiled = None
        _record(self.name, ok=False, seconds=None, detail=self.failed)
        log.warning("taylor: torch.compile unavailable for %s, running eagerly (%s)", self.name,
                    self.failed)

    @staticmethod
    def _signature(args) -> tuple:
        sig = [torch.is_grad_enabled()]
        for a in args:
            for v in (a if isinstance(a, (list, tuple)) else (a,)):
                if isinstance(v, Tensor):
                    sig.append((tuple(v.shape), v.dtype, v.requires_grad))
                elif isinstance(v, (list, tuple)):
                    sig.append(tuple((tuple(u.shape), u.dtype) if isinstance(u, Tensor) else u
                                     for u in v))
                else:
                    sig.append(v)
        return tuple(sig)

    def _probe(self, args) -> None:
        def copy(v):
            if isinstance(v, Tensor):
                return v.detach().clone().requires_grad_(v.requires_grad)
            if isinstance(v, (list, tuple)):
                return type(v)(copy(u) for u in v)
            return v
        cargs = copy(list(args))
        leaves = [v for v in _flatten(cargs) if v.requires_grad]
        t0 = time.perf_counter()
        outs = [o for o in _flatten(self.compiled(*cargs)) if o.requires_grad]
        if torch.is_grad_enabled() and leaves and outs:
            torch.autograd.grad(sum(o.sum() for o in outs), leaves, allow_unused=True)
        _record(self.name, ok=True, seconds=time.perf_counter() - t0,
                detail=f"signature {len(self.seen) + 1}")

    def __call__(self, *args):
        if self.compiled is not None:
            sig = self._signature(args)
            if sig not in self.seen:
                try:
                    self._probe(args)
                except Exception as e:  # noqa: BLE001
                    self._fail(e)
                    return self.eager(*args)
                self.seen.add(sig)
            return self.compiled(*args)
        return self.eager(*args)


def _flatten(v) -> List[Tensor]:
    """The tensors in a nest of lists and tuples, in order."""
    if isinstance(v, Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [u for w in v for u in _flatten(w)]
    return []


_COMPILE_OPTIONS: dict = {}
_EVENTS: List[dict] = []
_COMPILED: Dict[tuple, _Compiled] = {}


def _record(name: str, ok: bool, seconds: Optional[float], detail: str) -> None:
    _EVENTS.append({"function": name, "ok": ok, "seconds": seconds, "detail": detail})
    if ok:
        log.info("taylor: compiled %s in %.1f s (%s)", name, seconds, detail)


def compile_events() -> List[dict]:
    """Every compilation attempt so far: ``function``, ``ok``, ``seconds`` (compile plus first
    forward and backward, ``None`` on failure) and ``detail`` (the error when it failed)."""
    return [dict(e) for e in _EVENTS]


def compile_status() -> str:
    """One line on compilation in this process: not used, compiled (with total compile time),
    or the eager fallback and why."""
    if not _EVENTS:
        return "not compiled (eager)"
    failed = [e for e in _EVENTS if not e["ok"]]
    ok = [e for e in _EVENTS if e["ok"]]
    parts = []
    if ok:
        parts.append(f"compiled: {len(ok)} function signature(s), "
                     f"{sum(e['seconds'] for e in ok):.1f} s compile time")
    if failed:
        parts.append(f"eager fallback for {len(failed)} function(s): {failed[0]['detail']}")
    return "; ".join(parts)


def _get_compiled(key: tuple, name: str, make: Callable[[], Callable]) -> _Compiled:
    c = _COMPILED.get(key)
    if c is None:
        c = _COMPILED[key] = _Compiled(name, make())
    return c


def reset_compiled() -> None:
    """Forget compiled functions and recorded events (tests, benchmarks)."""
    _COMPILED.clear()
    _EVENTS.clear()


# -- the engine -----------------------------------------------------------------------------

def taylor_derivatives(model: nn.Module, x: Tensor, t: Tensor,
                       needed: Iterable[str] = DERIVATIVE_KEYS,
                       compile: bool = False) -> Dict[str, Tensor]:
    """U and the input derivatives that ``needed`` names, in one forward pass.

    Same contract as ``pinn.derivatives.compute_derivatives(model, x, t, needed,
    create_graph=True)``: the results are differentiable with respect to the parameters (and to
    x, t), so a loss built from them trains with ``loss.backward()``. Only the channels that
    ``needed`` requires are propagated (Burgers' U, Ux, Ut, Uxx carry no t-second channel).

    Args:
        model: a :class:`pinn.nn.mlp.MLP` that :func:`unsupported_reason` accepts.
        x, t: (N, 1) each, in the model's dtype.
        needed: a subset of :data:`pinn.derivatives.DERIVATIVE_KEYS`; ``U`` is always returned.
        compile: run the per-layer arithmetic through ``torch.compile`` (the whole network in
            one compiled function when it has no batch normalization; otherwise the arithmetic
            between the matrix products and the BN statistics). The first call per shape pays
            the compile time; a failing compiler falls back to eager, recorded in
            :func:`compile_status`.

    Returns:
        dict mapping ``U`` and each key of ``needed`` to an (N, n_out) tensor.

    Raises:
        ValueError: unsupported network (see :func:`unsupported_reason`) or bad shapes.
    """
    blocks, reason = _blocks(model)
    if reason is not None:
        raise ValueError(f"taylor derivatives: {reason}")
    if x.shape != t.shape or x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"x and t must both be (N, 1); got {tuple(x.shape)} and {tuple(t.shape)}")
    needed = set(needed) | {"U"}
    firsts, seconds = channels_for(needed)
    first_idx = tuple("xt".index(v) for v in firsts)
    n1, n2 = len(firsts), len(seconds)
    sel = (firsts.index(seconds[0]), firsts.index(seconds[-1]) + 1) if n2 else (0, 0)
    kinds = tuple(k for _, _, k in blocks)
    xt = torch.cat([x, t], dim=1)
    has_bn = any(bn is not None for _, bn, _ in blocks)

    if compile and not has_bn:
        # No statistics: the whole network is one pure function, compiled as a unit.
        key = ("chain", kinds, first_idx, n2, sel)
        fn = _get_compiled(key, f"chain[{','.join(kinds)}; x{''.join(firsts)} "
                                f"xx{''.join(seconds)}]",
                           lambda: _chain_fn(kinds, first_idx, n2, sel))
        U, D = fn(xt, model.in_center, model.in_scale, [b[0].weight for b in blocks],
                  [b[0].bias for b in blocks], model.head.weight, model.head.bias)
    else:
        U, D = _layered(blocks, kinds, first_idx, n2, sel, xt, model, compile)

    out = {"U": U}
    names = [f"U{v}" for v in firsts] + [f"U{v}{v}" for v in seconds]
    for i, name in enumerate(names):
        if name in needed:
            out[name] = D[i]
    return out


def _chain_fn(kinds, first_idx, n2, sel):
    def chain(xt, center, scale, weights, biases, head_w, head_b):
        return _chain(kinds, first_idx, n2, sel, xt, center, scale, weights, biases,
                      [None] * len(kinds), head_w, head_b)
    return chain


def _pointwise_fn(kind, n2, sel):
    def pointwise(y0, d1, d2, bias, bn):
        return _pointwise(kind, n2, sel, y0, d1, d2, bias, bn)
    return pointwise


def _layered(blocks, kinds, first_idx, n2, sel, xt, model, compile):
    """Layer by layer, BN statistics taken between the matrix product and the pointwise map."""
    n1 = len(first_idx)
    H = None
    for i, (lin, bn, kind) in enumerate(blocks):
        if i == 0:
            y0, d1 = _input_rows(xt, model.in_center, model.in_scale, lin.weight, first_idx)
            d2 = None
        else:
            Y = _linear_rows(H, lin.weight)
            y0 = Y[:, 0]
            d1 = Y[:, 1:1 + n1] if n1 else None
            d2 = Y[:, 1 + n1:] if n2 else None
        stats = None
        if bn is not None:
            with torch.no_grad():
                h = y0 if lin.bias is None else y0 + lin.bias[:, None]
            mean, var = bn.statistics(h.t())  # the layer's (N, w) pre-normalization values
            stats = (mean, var, float(bn.eps), bn.weight, bn.bias)
        if compile:
            key = ("layer", kind, n2, sel, i == 0, stats is not None)
            fn = _get_compiled(key, f"layer[{kind}; {'input' if i == 0 else 'hidden'}"
                                    f"{', bn' if stats is not None else ''}; {n1}+{n2} ch]",
                               lambda: _pointwise_fn(kind, n2, sel))
            H = fn(y0, d1, d2, lin.bias, stats)
        else:
            H = _pointwise(kind, n2, sel, y0, d1, d2, lin.bias, stats)
    return _head(H, model.head.weight, model.head.bias)
