"""Forward-mode ("Taylor") input derivatives of :class:`pinn.nn.mlp.MLP`, for training.

Reverse-mode autograd (:mod:`pinn.derivatives`, :mod:`pinn.derivatives_nd`) obtains first
partials by a reverse pass per output and second partials by a reverse pass over that reverse
pass; training then differentiates the whole nest once more. Here every block instead carries
the truncated Taylor expansion of its activations,

    h, h_v, h_vv      for the input columns v the request needs (x, y, z, t: any d >= 1),

through the network in one forward pass. An activation maps them with its closed-form
derivatives, a Linear layer maps all channels with one matrix product (its bias enters the
value channel only), and batch normalization with constant statistics (``detached``,
``frozen``, or any mode under ``eval()``) is a per-feature affine map. The outputs are
ordinary differentiable functions of the parameters, so ``loss.backward()`` is a single
first-order reverse pass, written out rather than left to autograd.

Entry points:

- :func:`taylor_partials` (points (N, d), :class:`pinn.coords.Derivative` requests): per
  output the value, pure partials up to order 4 along any axis (u_xxx for KdV, u_xxxx for
  Kuramoto-Sivashinsky) and mixed second partials (u_xy, u_xt); a mixed partial of order 3
  or more is declined, with a reason from :func:`taylor_unsupported`. Values, first and pure
  second partials take the hand-written channels above; a request with a mixed or a higher
  partial takes the jets of :mod:`.jets` (each axis carries its derivatives up to the order
  asked of it, Faa di Bruno's formula through each activation, a channel per mixed pair),
  with a reverse pass written out as well.
- :func:`taylor_derivatives` (x, t and the keys U, Ux, Ut, Uxx, Utt): the same engine on
  (x, t), with the hard initial condition; :func:`unsupported_reason` says when it cannot.

Modules:

- :mod:`.structure`: the network's blocks, the channels of a request, the reasons to decline;
- :mod:`.pointwise`: the activation maps on all channels and their reverse pass;
- :mod:`.chained`: networks without BN as one autograd node (two compiled graphs);
- :mod:`.layered`: block by block, BN statistics taken between a block's matrix product and
  its pointwise map, outside any compiled code, as ``model(points)`` takes them;
- :mod:`.jets`: mixed second partials and pure ones up to order 4, block by block;
- :mod:`.compiled`: ``torch.compile`` with an eager fallback, and its status;
- :mod:`.allocator`: the C library's allocator tuned once for the engine's large tensors
  (set ``pinn.taylor.allocator.ALLOCATOR_TUNING`` to False to leave it alone);
- :mod:`.engine`: the entry points.

On a 2-core CPU (torch 2.13) a training step (derivatives, residual, backward, Adam) of
Raissi's Burgers network (8 x 20 tanh, float32, N = 10,000) runs about 1.9x faster compiled
than reverse-over-reverse autograd (1.2-1.5x eager), and of the seed network
(8 x [80, BN, GELU] -> 4, float64, N = 1,000) about 5x faster eager and 8x compiled;
``python -m pinn.bench`` measures it.
"""
from pinn.taylor.allocator import allocator_status, tune_allocator
from pinn.taylor.compiled import compile_events, compile_seconds, compile_status, reset_compiled
from pinn.taylor.engine import taylor_derivatives, taylor_partials
from pinn.taylor.structure import channels_for, taylor_unsupported, unsupported_reason

__all__ = ["taylor_partials", "taylor_unsupported", "taylor_derivatives", "unsupported_reason",
           "channels_for", "compile_status", "compile_events", "compile_seconds",
           "reset_compiled", "tune_allocator", "allocator_status"]
