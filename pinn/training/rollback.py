"""Non-finite losses and gradients: the last state known to be finite, and what a non-finite
step does (``trainer.on_nonfinite``): roll back to that state with a lower learning rate, at
most ``trainer.max_rollbacks`` times, or stop. Also the fault injection its tests use
(``trainer.debug_nan_at``). Its state is the checkpoint's ``rollbacks`` key.

Whether a step was finite is kept on the device (:meth:`RollbackGuard.track`, no host read)
and read once at the loop's boundaries (:meth:`RollbackGuard.settle`: logging, evaluation,
checkpoint, redraw, the quasi-Newton stage, the end): on a GPU each read waits for the device,
so that Adam steps between boundaries queue without waiting. Steps after a non-finite one are
computed and then discarded with it: the rollback goes to the last kept state either way.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Dict, Iterable, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from pinn.config import choice
from pinn.logs import RunLogger
from pinn.training.events import EventLog
from pinn.training.optimizers import Optimizers


class RollbackGuard:
    """Keeps a copy of the training state and decides what a non-finite step does.

    Args:
        tc: the ``trainer`` config.
        optimizers: the run's :class:`pinn.training.optimizers.Optimizers` (a rollback lowers
            their learning rates).
        events: where rollbacks and stops are recorded.
        logger: the run's :class:`pinn.logs.RunLogger` (``nonfinite/*`` scalars).
    """

    def __init__(self, tc: DictConfig, optimizers: Optimizers, events: EventLog,
                 logger: RunLogger):
        self.policy = choice(tc.on_nonfinite)
        self.max_rollbacks, self.lr_reduction = tc.max_rollbacks, tc.rollback_lr_factor
        self.nan_at = tc.debug_nan_at
        self.optimizers, self.events, self.logger = optimizers, events, logger
        self.rollbacks = 0  # non-finite recoveries so far
        self._good: Optional[Dict[str, object]] = None  # the last state known to be finite
        self._nan_injected = False
        # The first non-finite step since the last settle: on the device (-1: none), and
        # where a step's terms were host numbers (a quasi-Newton iteration) on the host.
        self._first_bad: Optional[torch.Tensor] = None
        self._first_bad_host: Optional[int] = None
        self._unsettled = False

    def keep(self, state: Callable[[], Dict[str, object]]) -> None:
        """Copy ``state()`` for a rollback, the previous copy dropped first: with a dense
        quasi-Newton stage each copy holds an n x n inverse Hessian."""
        self._good = None
        self._good = copy.deepcopy(state())

    def good_state(self) -> Dict[str, object]:
        """A copy of the kept state (the kept one stays for the next rollback)."""
        return copy.deepcopy(self._good)

    def inject(self, step: int, total: torch.Tensor) -> torch.Tensor:
        """``total``, or NaN once at ``trainer.debug_nan_at`` (tests of the policies)."""
        if self.nan_at == step and not self._nan_injected:
            self._nan_injected = True
            return total * float("nan")
        return total

    def track(self, step: int, terms: Dict[str, object], params: Iterable[torch.Tensor]) -> None:
        """Note whether ``step``'s loss terms (0-d tensors or numbers) and the parameters after
        it are all finite, without reading anything back from the device."""
        # The norm of each parameter (one multi-tensor kernel): NaN or inf where any entry is
        # (a finite tensor whose norm overflows would need entries near 1e154 in float64).
        values = list(torch._foreach_norm([p.detach() for p in params]))
        for v in terms.values():
            if torch.is_tensor(v):
                values.append(v.detach().reshape(()).to(values[0].dtype))
            elif not math.isfinite(v) and self._first_bad_host is None:
                self._first_bad_host = step
        bad = ~torch.isfinite(torch.stack(values)).all()
        if self._first_bad is None or self._first_bad.device != bad.device:
            self._first_bad = torch.full((), -1, dtype=torch.int64, device=bad.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)
        self._unsettled = True

    def settle(self) -> Optional[int]:
        """The first non-finite step since the last call, or None (one host read when steps
        were tracked since, none otherwise)."""
        if not self._unsettled:
            return None
        self._unsettled = False
        device_first = int(self._first_bad.item())
        self._first_bad.fill_(-1)
        found = [s for s in (device_first, self._first_bad_host) if s is not None and s >= 0]
        self._first_bad_host = None
        return min(found) if found else None

    @staticmethod
    def finite(terms: Dict[str, float], model: nn.Module) -> bool:
        """Whether the loss terms and the parameters of ``model`` are all finite (reads the
        device; :meth:`track` and :meth:`settle` are the loop's form)."""
        if not all(math.isfinite(float(v)) for v in terms.values()):
            return False
        params = list(model.parameters())
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

    def recover(self, bad_step: int, step: int) -> Optional[str]:
        """Once the state of ``step`` is back for the non-finite ``bad_step``: roll back (the
        learning rates lowered; returns None) or say why training stops."""
        if self.policy == "rollback" and self.rollbacks < self.max_rollbacks:
            self.rollbacks += 1
            self.optimizers.scale_lr(self.lr_reduction)
            factor = self.optimizers.lr_factor
            self.events.add(bad_step, (
                f"non-finite loss or gradient: rolled back to step {step}, learning rate "
                f"x{factor:g} (rollback {self.rollbacks} of {self.max_rollbacks})"))
            self.logger.scalars({"nonfinite/rollbacks": self.rollbacks,
                                 "nonfinite/lr_factor": factor}, bad_step)
            return None
        why = ("trainer.on_nonfinite=stop" if self.policy == "stop"
               else f"{self.max_rollbacks} rollbacks (trainer.max_rollbacks) used up")
        self.events.add(bad_step, f"non-finite loss or gradient: stopped ({why}); state of "
                                  f"step {step} kept")
        return why

    def state_dict(self) -> Dict[str, object]:
        return {"rollbacks": self.rollbacks}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.rollbacks = int(state["rollbacks"])
