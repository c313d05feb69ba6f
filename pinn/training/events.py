"""The run's events: what changed during training and at which step (BN calibrations and
freezes, the derivative engine, the quasi-Newton stage, rollbacks, early stops).

The list goes into metrics.json and the end-of-run summary; its state is the checkpoint's
``events`` key.
"""
from __future__ import annotations

from typing import Dict, List


class EventLog:
    """The events so far, oldest first, each ``{"step": int, "event": str}``."""

    def __init__(self) -> None:
        self.items: List[Dict[str, object]] = []

    def add(self, step: int, text: str) -> None:
        self.items.append({"step": step, "event": text})

    def state_dict(self) -> Dict[str, object]:
        return {"events": list(self.items)}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.items = list(state["events"])
