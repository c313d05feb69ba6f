"""The entry points: :func:`taylor_partials` on points of any dimension, and
:func:`taylor_derivatives`, its (x, t) form in the keys U, Ux, Ut, Uxx, Utt.

Both plan the channels a request needs (:func:`.structure.plan`), run one forward pass that
carries them (:func:`propagate`: the whole network in one node where it can, else block by
block) and read the requested fields off the head's rows. A request with a mixed or a third or
fourth partial plans jets instead (:func:`.structure.jet_plan`, :func:`.jets.jets`).
"""
from __future__ import annotations

from typing import Dict, Iterable, List

import torch
from torch import Tensor, nn

from pinn.coords import DERIVATIVE_KEYS, Derivative
from pinn.nn.embedding import network_request
from pinn.taylor import allocator
from pinn.taylor.chained import chained, serves
from pinn.taylor.jets import jets
from pinn.taylor.layered import layered
from pinn.taylor.structure import (KEY_ALPHA, Channels, blocks_of, channels_for, jet_plan,
                                   keys_for, needs_jets, plan, taylor_unsupported,
                                   unsupported_reason)


def propagate(blocks: list, ch: Channels, points: Tensor, model: nn.Module,
              compile: bool) -> List[Tensor]:
    """[U, D_1, ...]: the network's value and each derivative channel of ``ch``, (N, n_out)
    each, at ``points`` (N, d)."""
    if serves(blocks, points, model):
        return chained(blocks, ch, points, model, compile)
    return layered(blocks, ch, points, model, compile)


def taylor_partials(model: nn.Module, points: Tensor, wanted: Iterable[Derivative],
                    compile: bool = False) -> Dict[Derivative, Tensor]:
    """The values, pure input partials up to order 4 and mixed second partials that
    ``wanted`` names, in one forward pass, on points of any dimension.

    Same contract as ``pinn.derivatives_nd.nd_derivatives(model, points, wanted)``: the
    results are differentiable with respect to the parameters (and to the points), so a loss
    built from them trains with ``loss.backward()``. Only the channels the request needs are
    carried: a first-derivative channel per axis with a first or second partial of any output,
    a second-derivative channel per axis with a second partial (3-D Poisson: x, y, z and xx,
    yy, zz; 2-D Navier-Stokes: x, y, t and xx, yy), through the hand-written maps of
    :mod:`.chained` and :mod:`.layered`. A request with a mixed or a third or fourth partial
    goes through the jets of :mod:`.jets` instead, each axis carrying its derivatives up to the
    highest order asked of it, and a channel per mixed pair (KdV: u_t and u_x, u_xx, u_xxx;
    u_xy: u_x, u_y, u_xy), block by block.
    BatchNorm statistics come from each layer's ``statistics``, as in ``model(points)``.

    Args:
        model: a :class:`pinn.nn.mlp.MLP` with ``d`` input columns that
            :func:`.structure.taylor_unsupported` accepts with ``wanted``.
        points: (N, d), the axes' columns in order, in the model's dtype.
        wanted: derivatives (:class:`pinn.coords.Derivative`): per output, the value (zero
            multi-index), pure partials up to order 4 and mixed second partials.
        compile: run the work through ``torch.compile`` (see :func:`taylor_derivatives`; the
            jets compile each block's pointwise map and its reverse pass).

    Returns:
        each wanted derivative -> (N,) tensor. Their reverse pass is first order:
        ``backward()`` of a loss built from them works, differentiating that gradient again
        raises.

    Raises:
        ValueError: points not (N, d) with d the network's input columns and every multi-index
            of length d, an output the network does not have, or an unsupported request or
            network (the reason of :func:`.structure.taylor_unsupported`).
    """
    wanted = list(dict.fromkeys(wanted))
    reason = taylor_unsupported(model, wanted)
    if reason is not None:
        raise ValueError(f"taylor partials: {reason}")
    n_in = model.n_in
    lengths = sorted({len(w.alpha) for w in wanted})
    if points.dim() != 2 or points.shape[1] != n_in or any(k != n_in for k in lengths):
        raise ValueError(f"taylor partials: points must be (N, d) and every multi-index of "
                         f"length d = {n_in}, the network's input columns; got points "
                         f"{tuple(points.shape)} and lengths {lengths}")
    bad = sorted({w.output for w in wanted if not 0 <= w.output < model.n_out})
    if bad:
        raise ValueError(f"taylor partials: output {bad[0]} is not one of the network's "
                         f"{model.n_out} outputs")
    blocks, _ = blocks_of(model)
    allocator.tune_on_first_use()
    if needs_jets(wanted):
        jp = jet_plan(wanted)
        outs = jets(blocks, jp, points, model, compile)
        return {w: outs[jp.index(w.alpha)][:, w.output] for w in wanted}
    transform = getattr(model, "output_transform", None)
    if transform is not None:  # on (x, t): the transform speaks the keys U, Ux, ...
        requested = set(keys_for(w.alpha for w in wanted))
        d = _derivatives_xt(model, blocks, points[:, :1], points[:, 1:], points, requested,
                            transform, compile)
        return {w: d[keys_for([w.alpha])[0]][:, w.output] for w in wanted}
    firsts = {j for w in wanted for j, k in enumerate(w.alpha) if k}
    seconds = {j for w in wanted for j, k in enumerate(w.alpha) if k == 2}
    ch = plan(firsts, seconds)
    outs = propagate(blocks, ch, points, model, compile)
    return {w: outs[ch.index(w.alpha)][:, w.output] for w in wanted}


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
        model: a :class:`pinn.nn.mlp.MLP` that :func:`.structure.unsupported_reason` accepts.
        x, t: (N, 1) each, in the model's dtype.
        needed: a subset of :data:`pinn.coords.DERIVATIVE_KEYS`; ``U`` is always returned.
        compile: run the work through ``torch.compile``: for a network without BN the
            whole forward pass and its reverse pass (two graphs; the matrix products inside
            them still call the BLAS), otherwise the pointwise map of each block and its
            reverse pass, with the matrix products and the BN statistics outside. The first
            call per shape pays the compile time (seconds; a second shape compiles once more
            with a symbolic batch size); a failing compiler falls back to eager, recorded in
            :func:`pinn.taylor.compile_status`. On a 2-core CPU compiling pays for a
            Burgers-size network (8 x 20 tanh, 10,000 points: 1.5x faster than eager) after
            about a thousand steps.

    Returns:
        dict mapping ``U`` and each key of ``needed`` to an (N, n_out) tensor. Their reverse
        pass is written out and first order: ``backward()`` of a loss built from them works,
        differentiating that gradient once more (double backward) raises.

    Raises:
        ValueError: unsupported network (see :func:`.structure.unsupported_reason`), unknown
            keys or bad shapes.
    """
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"taylor derivatives: {reason}")
    blocks, _ = blocks_of(model)
    allocator.tune_on_first_use()
    if x.shape != t.shape or x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"x and t must both be (N, 1); got {tuple(x.shape)} and {tuple(t.shape)}")
    return _derivatives_xt(model, blocks, x, t, torch.cat([x, t], dim=1), set(needed),
                           getattr(model, "output_transform", None), compile)


def _derivatives_xt(model: nn.Module, blocks: list, x: Tensor, t: Tensor, points: Tensor,
                    needed: set, transform, compile: bool) -> Dict[str, Tensor]:
    """The (x, t) keys ``needed`` (plus U) at ``points`` = [x, t] (N, 2), through
    ``transform`` (the network's own derivatives, then the product rule) when there is one."""
    needed = needed | {"U"}
    requested = needed
    if transform is not None:
        needed = network_request(needed, transform)
    firsts, seconds = channels_for(needed)
    ch = plan(["xt".index(v) for v in firsts], ["xt".index(v) for v in seconds])
    outs = propagate(blocks, ch, points, model, compile)
    out = {"U": outs[0]}
    for key in ("Ux", "Ut", "Uxx", "Utt"):
        if key in needed:
            out[key] = outs[ch.index(KEY_ALPHA[key])]
    if transform is not None:
        out = transform.apply_to_derivatives(x, t, out, requested)
    return out
