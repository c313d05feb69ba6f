"""This process's part in a run of several ranks (``torchrun``; :mod:`pinn.distributed`):
gradients summed over the ranks, stop decisions agreed at each logging and evaluation step
(:meth:`pinn.trainer.Trainer._agreement_step`), and a lost rank.

A signal, a pruned trial or the time budget seen by any rank stops every rank after the same
step, the next step where they agree. When a collective fails (a rank died, or did not answer within
``distributed.timeout_s``), the step in flight is undone from a snapshot taken before it and
the survivors count each other, so that the lowest of them writes the checkpoint. On one
process every method here does nothing. Nothing here is part of a checkpoint.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from omegaconf import DictConfig
from torch import nn

from pinn import distributed
from pinn.distributed import Group


class Ranks:
    """``group``: this rank's place, or None on one process; ``root``: the run folder."""

    def __init__(self, group: Optional[Group], root: Path, dc: DictConfig):
        self.group, self.dc = group, dc
        # Where the survivors of a lost rank count each other (see distributed.census).
        self.census_dir = (None if group is None else
                           root / distributed.CENSUS / distributed.census_token())
        self.over_budget = False  # the ranks' common budget decision
        self.allreduce_bytes = 0  # bytes all-reduced by the last loss evaluation
        self._snapshot: Optional[dict] = None  # the state before this step

    @property
    def world(self) -> int:
        return 1 if self.group is None else self.group.world

    def reduce_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Each parameter gradient becomes the sum of the ranks' (one all-reduce)."""
        if self.group is not None:
            self.allreduce_bytes = distributed.reduce_gradients(params)

    def before_step(self, step: int, model: nn.Module, points) -> None:
        """Keep what a lost rank rolls back to (``points``: the run's
        :class:`pinn.training.points.PointSets`); the fault injection of the tests."""
        if self.group is None:
            return
        if self.dc.debug_kill_at == step and self.dc.debug_kill_rank == self.group.rank:
            os.kill(os.getpid(), signal.SIGKILL)
        self._snapshot = {"step": step,
                          "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                          "points": points.snapshot()}

    def agree(self, stop_requested: Optional[str], prune_reason: Optional[str],
              over_budget: bool, like: torch.Tensor) -> Tuple[Optional[str], Optional[str]]:
        """After a step: the stop request (a signal's name) and prune reason every rank takes,
        from any rank's; also :attr:`over_budget` (one small all-reduce)."""
        if self.group is None:
            return stop_requested, prune_reason
        signum = signal.Signals[stop_requested].value if stop_requested else 0
        signum, pruned, over = distributed.agree(
            [signum, prune_reason is not None, over_budget], like)
        if signum and not stop_requested:
            stop_requested = signal.Signals(int(signum)).name
        if pruned and not prune_reason:
            prune_reason = "pruned by the search at rank 0's evaluation"
        self.over_budget = bool(over)
        return stop_requested, prune_reason

    def lost(self, error: BaseException, step: int, model: nn.Module, points
             ) -> Tuple[List[int], str]:
        """A collective failed during the step after ``step``: undo that step, count the
        survivors (the lowest becomes the writer); returns the lost ranks and what happened."""
        snap = self._snapshot
        if snap is not None and snap["step"] == step:  # the step did not complete
            model.load_state_dict(snap["model"])
            points.restore(snap["points"])
        alive = distributed.census(self.census_dir)
        lost = sorted(set(range(self.world)) - set(alive))
        who = f"rank {', '.join(map(str, lost))}" if lost else "another rank"
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        cause = cause if len(cause) <= 120 else cause[:117] + "..."
        return lost, (f"{who} of {self.world} stopped answering during step {step + 1} "
                      f"({cause}); the run ended on every rank")

    def metrics(self) -> Dict[str, object]:
        if self.group is None:
            return {}
        # One flat gradient per loss evaluation (the loss terms and a few flags besides).
        return {"ranks": self.group.world, "backend": self.group.backend,
                "allreduce_bytes_per_evaluation": self.allreduce_bytes}
