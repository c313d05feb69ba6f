"""Batch normalization with explicit semantics.

A batch-normalized network is two functions: one that normalizes with the statistics of the batch
it is given, one that normalizes with stored population statistics. :class:`BatchNorm` makes the
choice explicit through ``mode``:

- ``batch``: the batch's mean and (biased) variance, differentiated through. Every output then
  depends on every point of the batch, so ``grad(U.sum(), x)`` is *not* a per-point derivative.
- ``detached``: the batch's statistics, treated as constants in every derivative (input and
  parameter). Per-point derivatives, for the statistics of the current batch.
- ``frozen``: the stored population statistics as constants (PyTorch ``eval()``, MATLAB
  ``predict``) while the affine weight and bias keep training.

``module.eval()`` always means "predict": frozen statistics, no updates, whatever ``mode`` says.
The running variance stores the *biased* variance, the one the layer normalizes with, so that a
calibrated ``frozen`` layer computes exactly what ``detached`` computed on the calibration set
(PyTorch's ``BatchNorm1d`` stores the unbiased variance instead).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn

from pinn import distributed

MODES = ("batch", "detached", "frozen")


class BatchNorm(nn.Module):
    """Feature-wise batch normalization of an (N, C) tensor with an explicit statistics mode.

    Args:
        num_features: C.
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running statistics; ``None`` gives a
            cumulative (equal-weight) average over all batches seen.
        mode: one of :data:`MODES`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 mode: str = "detached"):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.mode = mode
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))  # biased variance
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        # 1 once the running statistics come from an exact calibration, 0 while estimated.
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.long))
        # Statistics shared across several forward calls of one training step (see
        # shared_batch_statistics); None outside that context.
        self._sharing = False
        self._shared: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._calibrating = False
        self._track = True  # update running statistics in batch/detached training passes
        # Statistics of the last batch seen in batch/detached mode, for diagnostics.
        self.last_batch_stats: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"bn.mode={value!r} is not allowed: one of {', '.join(MODES)}")
        self._mode = str(value)

    @property
    def effective_mode(self) -> str:
        """The mode this layer computes with now: ``frozen`` whenever the module is in eval()."""
        return self._mode if self.training else "frozen"

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, mode={self._mode}"

    def _update_running(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        with torch.no_grad():
            self.num_batches_tracked += 1
            f = self.momentum
            if f is None:  # the cumulative average: 1/n, computed where n lives (no host read)
                f = (1.0 / self.num_batches_tracked.double()).to(self.running_mean.dtype)
            self.running_mean.lerp_(mean.detach(), f)
            self.running_var.lerp_(var.detach(), f)
            self.calibrated.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (N, C) -> (N, C)
        mean, var = self.statistics(h)
        return (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias

    def statistics(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (mean, variance) this layer normalizes ``h`` (N, C) with, each (C,), applying the
        mode's semantics: running-statistics updates, sharing within a step, calibration.
        Constants (no graph to ``h``) except in ``batch`` mode."""
        if self._calibrating:
            mean, var = _moments(h, differentiable=False)
            with torch.no_grad():
                self.running_mean.copy_(mean)
                self.running_var.copy_(var)
                self.calibrated.fill_(1)
        elif self.effective_mode == "frozen":
            mean, var = self.running_mean, self.running_var
        elif self._sharing and self._shared is not None:
            mean, var = self._shared
        else:
            if h.shape[0] < 2 and distributed.current() is None:
                raise ValueError(f"bn.mode={self._mode} needs a batch of at least 2 points, "
                                 f"got {h.shape[0]}; use frozen statistics (model.eval())")
            mean, var = _moments(h, differentiable=self._mode == "batch")
            if self._mode == "detached":
                mean, var = mean.detach(), var.detach()
            self.last_batch_stats = (mean.detach(), var.detach())
            if self._track:
                self._update_running(mean, var)
            if self._sharing:
                self._shared = (mean, var)
        return mean, var


def _moments(h: torch.Tensor, differentiable: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance of ``h`` (N, C) over the batch: this process's rows, or under
    torchrun the union of every rank's rows (:func:`pinn.distributed.moments`)."""
    if distributed.current() is None:
        return h.mean(0), h.var(0, unbiased=False)
    if differentiable:
        return distributed.moments(h)
    with torch.no_grad():
        return distributed.moments(h)


def bn_layers(model: nn.Module) -> list[BatchNorm]:
    return [m for m in model.modules() if isinstance(m, BatchNorm)]


def set_bn_mode(model: nn.Module, mode: str) -> None:
    """Set every :class:`BatchNorm` of ``model`` to ``mode`` (``batch``, ``detached``, ``frozen``)."""
    if mode not in MODES:
        raise ValueError(f"bn.mode={mode!r} is not allowed: one of {', '.join(MODES)}")
    for m in bn_layers(model):
        m.mode = mode


@contextmanager
def shared_batch_statistics(model: nn.Module) -> Iterator[None]:
    """Within the context, every forward call reuses the statistics of the first one.

    A training step evaluates the network on several point sets (interior, initial, boundary);
    they must all see the *same* function, the one defined by the first (interior) batch.
    Running statistics are updated once, by that first call.
    """
    layers = bn_layers(model)
    for m in layers:
        m._sharing, m._shared = True, None
    try:
        yield
    finally:
        for m in layers:
            m._sharing, m._shared = False, None


@contextmanager
def running_statistics_fixed(model: nn.Module) -> Iterator[None]:
    """Within the context, no forward pass updates the running statistics (diagnostic passes
    must not change the network they measure)."""
    layers = bn_layers(model)
    saved = [m._track for m in layers]
    for m in layers:
        m._track = False
    try:
        yield
    finally:
        for m, v in zip(layers, saved):
            m._track = v


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: torch.Tensor, t: Optional[torch.Tensor] = None) -> None:
    """Set every BN layer's running statistics to the exact population statistics of (x, t),
    or of the points ``x`` (N, d) alone when ``t`` is not given (problems of any dimension).

    One forward pass over the whole set, layer by layer: each layer stores the mean and biased
    variance of its input and normalizes with them, so the next layer sees exactly what it will
    see in ``frozen`` mode. Afterwards ``frozen`` and ``detached`` agree on this set to rounding.

    Args:
        model: a network built by :func:`pinn.nn.build_model`.
        x, t: (N, 1) each; or x (N, d), the points, and t None.
    """
    layers = bn_layers(model)
    for m in layers:
        m._calibrating = True
    try:
        model(x if t is None else torch.cat([x, t], dim=1))
    finally:
        for m in layers:
            m._calibrating = False
