"""The derivative engine of the run's loss: ``derivatives.engine``, or autograd where the Taylor
engine cannot serve the network in its current mode (the reason recorded once, as an event,
at each change). Its state is the checkpoint's ``engine`` key."""
from __future__ import annotations

from typing import Dict, Iterable, Optional

from torch import nn

from pinn.config import choice
from pinn.coords import Derivative
from pinn.fields import taylor_reason
from pinn.training.events import EventLog


class EngineChoice:
    """Chooses the engine before each use; :attr:`name` is the last one chosen (None before)."""

    def __init__(self, requested, model: nn.Module, wanted: Iterable[Derivative],
                 events: EventLog):
        self.requested = choice(requested)
        self.model, self.wanted, self.events = model, wanted, events
        self.name: Optional[str] = None

    def __call__(self, step: int) -> str:
        """``autograd`` or ``taylor`` for a loss evaluated at ``step``."""
        reason = None
        if self.requested != "autograd":
            reason = taylor_reason(self.model, self.wanted)
        engine = "autograd" if self.requested == "autograd" or reason else "taylor"
        if engine != self.name:
            self.name = engine
            note = f" (taylor: {reason})" if reason else ""
            self.events.add(step, f"derivatives engine: {engine}{note}")
        return engine

    def state_dict(self) -> Dict[str, object]:
        return {"engine": self.name}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.name = state["engine"]
