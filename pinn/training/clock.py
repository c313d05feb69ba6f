"""Where the run's time goes, and the wall-clock budget of the training loop.

Optimizer steps are timed per stage without the ``torch.compile`` time paid inside them; the
loop as a whole, redraws and divergence measurements are timed apart. The logged rate is that
of one logging window of one stage. The seconds so far are the checkpoint's ``*_seconds``
keys, so that a resumed run reports the time of the whole run.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional

from pinn.taylor import compile_events, compile_seconds, compile_status


class RunClock:
    """Seconds spent so far and the budget ``trainer.max_minutes`` (None: no budget).

    Attributes:
        train_seconds: optimizer steps, compilation excluded.
        compile_seconds: ``torch.compile`` time paid inside steps.
        loop_seconds: the whole loop (steps, redraws, evaluations, checkpoints).
        stage_seconds: optimizer steps per stage, ``{"adam": s, "qn": s}``.
        resample_seconds, divergence_seconds: redraws; forward-vs-predict measurements.
    """

    def __init__(self, max_minutes: Optional[float]):
        self.max_minutes = max_minutes
        self.budget = None if max_minutes is None else 60.0 * max_minutes
        self.train_seconds = 0.0
        self.compile_seconds = 0.0
        self.loop_seconds = 0.0
        self.stage_seconds = {"adam": 0.0, "qn": 0.0}
        self.resample_seconds = 0.0
        self.divergence_seconds = 0.0
        self._window = (0, 0.0)  # (step, train_seconds) where the logged rate's window began
        self._loop: Optional[tuple] = None  # (loop start, loop seconds before it)
        self._wall0 = time.perf_counter()
        self._compile_events0 = len(compile_events())  # earlier runs in this process

    # -- the loop ---------------------------------------------------------------------------
    def start(self) -> None:
        """A call of ``fit`` begins: its wall time counts from here."""
        self._wall0 = time.perf_counter()

    def start_loop(self) -> None:
        """The loop begins: loop time counts on from the run's total so far."""
        self._loop = (time.perf_counter(), self.loop_seconds)

    def elapsed(self) -> float:
        """Loop seconds of the whole run up to now."""
        loop0, before = self._loop
        return before + time.perf_counter() - loop0

    def tick(self) -> None:
        self.loop_seconds = self.elapsed()

    def spent(self) -> bool:
        """Whether the loop time at the last :meth:`tick` has used the budget up."""
        return self.budget is not None and self.loop_seconds >= self.budget

    def over_budget_now(self) -> bool:
        return self.budget is not None and self.elapsed() >= self.budget

    def budget_left(self) -> Optional[float]:
        """Seconds of the budget left, or None without a budget (or before the loop)."""
        if self._loop is None or self.budget is None:
            return None
        return max(self.budget - self.elapsed(), 0.0)

    def budget_message(self) -> str:
        compiled = (f" ({self.compile_seconds:.0f} s of it compiling)"
                    if self.compile_seconds >= 1 else "")
        return f"time budget trainer.max_minutes={self.max_minutes:g} reached{compiled}"

    # -- steps ------------------------------------------------------------------------------
    def timed_step(self, stage: str, step: Callable[[], Dict[str, float]]) -> Dict[str, float]:
        """``step()``, its seconds added to ``stage`` ("adam" or "qn") less its compile time."""
        t0, c0 = time.perf_counter(), compile_seconds()
        out = step()
        compiling = compile_seconds() - c0
        self.compile_seconds += compiling
        stepping = time.perf_counter() - t0 - compiling
        self.train_seconds += stepping
        self.stage_seconds[stage] += stepping
        return out

    @contextmanager
    def counting(self, what: str) -> Iterator[None]:
        """Add the seconds of the block to ``what``: ``resample`` or ``divergence``."""
        t0 = time.perf_counter()
        yield
        name = f"{what}_seconds"
        setattr(self, name, getattr(self, name) + time.perf_counter() - t0)

    def open_window(self, step: int, restart: bool = False) -> None:
        """Before a step: a rate window is one stage's (``restart``: the stage changed); it
        starts again at step 0 and after a rollback."""
        if restart or step == 0 or self._window[0] > step:
            self._window = (step, self.train_seconds)

    def window_rate(self, step: int) -> float:
        """Steps per second since the window began (optimizer steps only); a new window
        begins here."""
        step0, seconds0 = self._window
        rate = (step - step0) / max(self.train_seconds - seconds0, 1e-9)
        self._window = (step, self.train_seconds)
        return rate

    # -- reports ----------------------------------------------------------------------------
    def metrics(self, step: int) -> Dict[str, float]:
        return {"wall_time_s": time.perf_counter() - self._wall0,
                "train_time_s": self.train_seconds,
                "loop_time_s": self.loop_seconds,
                "adam_time_s": self.stage_seconds["adam"],
                "qn_time_s": self.stage_seconds["qn"],
                "resample_time_s": self.resample_seconds,
                "steps_per_s": step / max(self.train_seconds, 1e-9)}

    def compile_metrics(self) -> Dict[str, object]:
        return {"compile_status": compile_status(since=self._compile_events0),
                "compile_time_s": self.compile_seconds}

    def state_dict(self) -> Dict[str, object]:
        return {"train_seconds": self.train_seconds,
                "compile_seconds": self.compile_seconds,
                "loop_seconds": self.loop_seconds,
                "stage_seconds": dict(self.stage_seconds),
                "resample_seconds": self.resample_seconds,
                "divergence_seconds": self.divergence_seconds}

    def load_state_dict(self, state: Dict[str, object], step: int) -> None:
        """Continue at ``step`` (a new rate window begins there)."""
        self.train_seconds = float(state["train_seconds"])
        self.compile_seconds = float(state.get("compile_seconds", 0.0))
        self.loop_seconds = float(state.get("loop_seconds", 0.0))
        self.stage_seconds = dict(state.get("stage_seconds", {"adam": 0.0, "qn": 0.0}))
        self.resample_seconds = float(state.get("resample_seconds", 0.0))
        self.divergence_seconds = float(state["divergence_seconds"])
        self._window = (step, self.train_seconds)
