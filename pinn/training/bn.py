"""Batch normalization during training: when the statistics are calibrated and frozen, and
the forward-vs-predict divergence log of a BN network.

:class:`BNSchedule` calibrates exactly (one pass over the interior points) and freezes at
``bn.freeze_at``, at the start of the quasi-Newton stage (a line search needs one
deterministic function of the parameters) and, with ``bn.calibrate_at_end``, calibrates
before the final evaluation. Its state is the checkpoint's ``bn_mode`` key.
:class:`DivergenceProbe` holds the fixed probe points of ``log.divergence_every``.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from pinn import distributed
from pinn.data import Observations
from pinn.divergence import custom_scalar_layout, field_names, measure_divergence
from pinn.logs import RunLogger
from pinn.nn.norm import bn_layers, calibrate_bn, set_bn_mode
from pinn.pdes.problem import PDE
from pinn.sampling import Batch, Sampler
from pinn.training.events import EventLog


class BNSchedule:
    """The BN schedule of ``model`` (nothing happens for a network without BN)."""

    def __init__(self, model: nn.Module, bn: DictConfig, events: EventLog):
        self.model, self.events = model, events
        self.has_bn = bool(bn_layers(model))
        self.freeze_at, self.calibrate_at_end = bn.freeze_at, bn.calibrate_at_end

    @property
    def mode(self) -> Optional[str]:
        return bn_layers(self.model)[0].mode if self.has_bn else None

    def calibrate(self, points: torch.Tensor, step: int, reason: str) -> None:
        """Exact population statistics of ``points`` (N, d), in one pass."""
        calibrate_bn(self.model, points)
        self.events.add(step, f"calibrate ({reason})")

    def freeze(self, points: torch.Tensor, step: int, reason: str) -> bool:
        """Calibrate on ``points``, then train on with the statistics as constants; returns
        whether anything changed (False: no BN, or frozen already)."""
        if not self.has_bn or self.mode == "frozen":
            return False
        self.calibrate(points, step, reason)
        set_bn_mode(self.model, "frozen")
        self.events.add(step, f"freeze ({reason})")
        return True

    def freeze_reason(self, step: int, stage: str) -> Optional[str]:
        """Why the statistics freeze before ``step`` of ``stage``, or None."""
        if stage != "adam":
            return "quasi-Newton stage"
        if self.freeze_at is not None and step == self.freeze_at:
            return "bn.freeze_at"
        return None

    def calibrates_at_end(self) -> bool:
        return self.has_bn and bool(self.calibrate_at_end) and self.mode != "frozen"

    def state_dict(self) -> Dict[str, object]:
        return {"bn_mode": self.mode}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        if state["bn_mode"] is not None:
            set_bn_mode(self.model, state["bn_mode"])


class DivergenceProbe:
    """A fixed set of ``log.divergence_points`` probe points and the last divergence measured
    on it (:func:`pinn.divergence.measure_divergence`); the TensorBoard layout of its curves
    is registered with ``logger``."""

    def __init__(self, cfg: DictConfig, model: nn.Module, pde: PDE, logger: RunLogger):
        first = next(model.parameters())
        # Drawn from a generator of its own, so that it never shifts the training points of
        # a seed.
        self.points = Sampler("sobol", cfg.log.divergence_points, 1, 0, pde.domain,
                              first.dtype, torch.Generator().manual_seed(cfg.seed + 7919),
                              device=first.device).sample().interior
        self.last: Dict[str, float] = {}
        logger.custom_scalars(custom_scalar_layout(len(bn_layers(model)), field_names(pde)))

    def measure(self, model: nn.Module, pde: PDE, batch: Batch, weights: Dict[str, float],
                data: Optional[Observations]) -> Dict[str, float]:
        """Forward-vs-predict divergence of ``model`` (on several ranks, this rank's alone, on
        the global ``batch`` and ``data``: the single-process quantities)."""
        with distributed.local():
            self.last = measure_divergence(model, pde, self.points, batch, weights, data=data)
        return self.last
