"""What the engine can take: the network's blocks, the derivative channels of a request, and a
one-line reason wherever the network or the request is not supported.

Supported networks are :class:`pinn.nn.mlp.MLP` with hidden blocks [Linear, (BatchNorm),
activation] (tanh, exact GELU, sin, SiLU), batch normalization with constant statistics
(``detached``, ``frozen`` or any mode under ``eval()``), an input embedding that knows its own
derivative rows (``taylor_rows``) for as many columns as the network takes, and on (x, t) the
hard initial condition (``apply_to_derivatives``).

Supported requests are, per output, the value, pure partials up to order 4 along any axis
(u_x, u_xx, u_xxx for KdV, u_xxxx for Kuramoto-Sivashinsky, u_t, u_tt) and mixed second
partials (u_xy, u_xt). Values, first and pure second partials (what Poisson, Helmholtz, heat,
Burgers and the Navier-Stokes residuals read) go through the hand-written channels of
:class:`Channels`; a request with a mixed or a higher partial through the jets of
:class:`JetPlan`. A mixed partial of order 3 or more (u_xxy) is declined; autograd
(:mod:`pinn.derivatives_nd`) takes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from torch import nn

from pinn.coords import DERIVATIVE_KEYS, Derivative
from pinn.nn.mlp import MLP, Sin
from pinn.nn.norm import BatchNorm

MAX_PURE_ORDER = 2  # pure partials up to this order per axis in the hand-written channels
MAX_JET_ORDER = 4  # pure partials up to this order per axis in the jets (u_xxxx)
MAX_MIXED_ORDER = 2  # mixed partials up to this order (u_xy)


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


def blocks_of(model: nn.Module) -> Tuple[Optional[list], Optional[str]]:
    """[(linear, bn or None, activation kind)] per hidden block, or (None, reason).

    The network's blocks and their current modes only; the number of input columns, the
    embedding and the output transform are checked against a request by the entry points."""
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


def _embedding_reason(model: MLP) -> Optional[str]:
    """Why the network's input embedding cannot be differentiated here, or None."""
    embedding = getattr(model, "embedding", None)
    if embedding is None:
        return None
    if not hasattr(embedding, "taylor_rows"):
        return f"the input embedding {type(embedding).__name__} has no taylor_rows"
    n_in = getattr(embedding, "n_in", None)
    if n_in != model.n_in:
        return (f"the input embedding takes {n_in} input columns, the network "
                f"{model.n_in}")
    return None


def unsupported_reason(model: nn.Module) -> Optional[str]:
    """Why :func:`pinn.taylor.taylor_derivatives` cannot handle ``model`` in its current mode,
    or ``None``.

    Args:
        model: the network (typically a :class:`pinn.nn.mlp.MLP`) on (x, t).

    Returns:
        ``None`` when supported, else a one-line reason (e.g. BatchNorm in ``batch`` mode while
        training: the statistics are differentiated through, which couples the points).
    """
    reason = blocks_of(model)[1]
    if reason is None and model.n_in != 2:
        reason = (f"the network takes {model.n_in} input columns; taylor_derivatives takes "
                  "(x, t): use taylor_partials")
    return reason or _embedding_reason(model)


def needs_jets(wanted: Iterable[Derivative]) -> bool:
    """Whether ``wanted`` holds a mixed partial or a pure one of order 3 or 4, which only the
    jets (:class:`JetPlan`) carry."""
    return any(w.order > MAX_PURE_ORDER or sum(1 for k in w.alpha if k) > 1 for w in wanted)


def _request_reason(w: Derivative) -> Optional[str]:
    """Why no channel of the engine carries ``w``, or None."""
    mixed = sum(1 for k in w.alpha if k) > 1
    if mixed and w.order > MAX_MIXED_ORDER:
        return (f"output {w.output}, multi-index {w.alpha} is a mixed partial of order "
                f"{w.order}; the taylor engine carries mixed partials of order "
                f"{MAX_MIXED_ORDER} (u_xy) and pure ones up to order {MAX_JET_ORDER}")
    if w.order > MAX_JET_ORDER:
        return (f"output {w.output}, multi-index {w.alpha}: order {w.order}; the taylor "
                f"engine carries pure partials up to order {MAX_JET_ORDER}")
    return None


def taylor_unsupported(model: nn.Module, wanted: Iterable[Derivative]) -> Optional[str]:
    """Why :func:`pinn.taylor.taylor_partials` cannot compute ``wanted`` for ``model`` in its
    current mode, or ``None``: the caller can then take autograd and say why.

    Args:
        model: the network (typically a :class:`pinn.nn.mlp.MLP`).
        wanted: the derivatives to compute (:class:`pinn.coords.Derivative`).

    Returns:
        ``None`` when supported, else a one-line reason: a mixed partial of order 3 or more or
        a pure one above order 4, a network that is not an MLP of supported blocks, BatchNorm
        in ``batch`` mode while training, an embedding that does not take the network's input
        columns (or, for mixed and higher partials, has no ``taylor_jets``), an output
        transform on other than (x, t) or with mixed or higher partials.
    """
    wanted = list(wanted)
    for w in wanted:
        reason = _request_reason(w)
        if reason is not None:
            return reason
    blocks, reason = blocks_of(model)
    if reason is not None:
        return reason
    reason = _embedding_reason(model)
    if reason is not None:
        return reason
    transform = getattr(model, "output_transform", None)
    if transform is not None and not getattr(transform, "taylor", True):
        return transform.reason  # a transform the engine does not carry (pinn.nn.hard)
    if transform is not None and model.n_in != 2:
        return (f"the output transform (hard initial condition) is defined on (x, t); the "
                f"network takes {model.n_in} input columns")
    if needs_jets(wanted):
        w = next(w for w in wanted if needs_jets([w]))
        embedding = getattr(model, "embedding", None)
        if embedding is not None and not hasattr(embedding, "taylor_jets"):
            return (f"the input embedding {type(embedding).__name__} has no taylor_jets "
                    f"(output {w.output}, multi-index {w.alpha})")
        if transform is not None:
            return (f"output {w.output}, multi-index {w.alpha}: the output transform (hard "
                    f"initial condition) gives U, Ux, Ut, Uxx, Utt only")
    return None


@dataclass(frozen=True)
class Channels:
    """The derivative channels one pass carries, after the value channel.

    Attributes:
        idx: the input column of each first-derivative channel, in channel order.
        sel: (start, stop): the first-derivative channels that also have a second-derivative
            channel, which follow in the same order (the k-th second channel is the second
            partial along ``idx[sel[0] + k]``).
    """

    idx: Tuple[int, ...]
    sel: Tuple[int, int]

    @property
    def n1(self) -> int:
        return len(self.idx)

    @property
    def n2(self) -> int:
        return self.sel[1] - self.sel[0]

    @property
    def second_idx(self) -> Tuple[int, ...]:
        """The input column of each second-derivative channel."""
        return self.idx[self.sel[0]:self.sel[1]]

    def index(self, alpha: Sequence[int]) -> int:
        """The channel (0: the value) of a pure partial of order <= 2."""
        axes = [j for j, k in enumerate(alpha) if k]
        if not axes:
            return 0
        j = axes[0]
        if alpha[j] == 1:
            return 1 + self.idx.index(j)
        return 1 + self.n1 + self.second_idx.index(j)


def plan(firsts: Iterable[int], seconds: Iterable[int]) -> Channels:
    """The channels for first partials along the columns ``firsts`` and pure second partials
    along ``seconds`` (a second partial carries its first one along).

    First-derivative channels go in column order; where the columns with a second partial are
    not adjacent in that order (u_x, u_y, u_t and u_xx, u_tt), those go first so that the
    pointwise maps can address them as one run of channels."""
    second_cols = sorted(set(seconds))
    first_cols = sorted(set(firsts) | set(second_cols))
    if not second_cols:
        return Channels(tuple(first_cols), (0, 0))
    start = first_cols.index(second_cols[0])
    if first_cols[start:start + len(second_cols)] != second_cols:
        first_cols = second_cols + [j for j in first_cols if j not in second_cols]
        start = 0
    return Channels(tuple(first_cols), (start, start + len(second_cols)))


@dataclass(frozen=True)
class JetPlan:
    """The channels of a request with mixed or higher partials, after the value channel: per
    input column of ``axes`` (ascending) its derivatives of orders 1..K (``orders``), then a
    mixed second derivative per pair of ``mixed``.

    Attributes:
        axes: the input columns with derivative channels.
        orders: K per column of ``axes``: the channels of orders 1..K along it, in order.
        mixed: (p, q) positions in ``axes``, p < q: a channel d2/(d axes[p] d axes[q]).
    """

    axes: Tuple[int, ...]
    orders: Tuple[int, ...]
    mixed: Tuple[Tuple[int, int], ...]

    @property
    def n_channels(self) -> int:
        """Channels in all, the value's included."""
        return 1 + sum(self.orders) + len(self.mixed)

    @property
    def top(self) -> int:
        """The highest order carried (the activation derivatives a block needs)."""
        return max(self.orders + ((2,) if self.mixed else ()), default=0)

    def index(self, alpha: Sequence[int]) -> int:
        """The channel (0: the value) of a pure partial or of a mixed second partial."""
        cols = [j for j, k in enumerate(alpha) if k]
        if not cols:
            return 0
        if len(cols) == 1:
            p = self.axes.index(cols[0])
            return sum(self.orders[:p]) + alpha[cols[0]]
        pair = (self.axes.index(cols[0]), self.axes.index(cols[1]))
        return 1 + sum(self.orders) + self.mixed.index(pair)


def jet_plan(wanted: Iterable[Derivative]) -> JetPlan:
    """The jets for ``wanted`` (mixed partials of order 2, pure ones up to order 4): along each
    column the highest pure order it asks for, at least 1 where a mixed partial needs the first
    derivative (u_xy: the channels u_x, u_y, u_xy)."""
    orders: dict = {}
    pairs = set()
    for w in wanted:
        cols = [j for j, k in enumerate(w.alpha) if k]
        if len(cols) == 1:
            orders[cols[0]] = max(orders.get(cols[0], 0), w.alpha[cols[0]])
        elif cols:
            pairs.add(tuple(cols))
            for j in cols:
                orders[j] = max(orders.get(j, 0), 1)
    axes = tuple(sorted(orders))
    mixed = tuple(sorted((axes.index(i), axes.index(j)) for i, j in pairs))
    return JetPlan(axes, tuple(orders[j] for j in axes), mixed)


# -- the (x, t) vocabulary -------------------------------------------------------------------

# key -> multi-index on (x, t)
KEY_ALPHA = {"U": (0, 0), "Ux": (1, 0), "Ut": (0, 1), "Uxx": (2, 0), "Utt": (0, 2)}


def channels_for(needed: Iterable[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The derivative channels a request on (x, t) needs: (first, second) variable names.

    ``Uxx`` needs the ``x`` channel even when ``Ux`` is not returned.

    Args:
        needed: a subset of :data:`pinn.coords.DERIVATIVE_KEYS`.

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


def keys_for(alphas: Iterable[Sequence[int]]) -> List[str]:
    """The (x, t) keys of multi-indices on (x, t) (pure, order <= 2)."""
    by_alpha = {a: k for k, a in KEY_ALPHA.items()}
    return [by_alpha[tuple(a)] for a in alphas]
