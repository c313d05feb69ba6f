"""The optimizers of a run: Adam with a learning-rate schedule, then the quasi-Newton stage
(``optim.qn``, :mod:`pinn.optim.stages`), made when it starts. One Adam step or one
quasi-Newton iteration on the loss, on several ranks with the gradient summed over them.

Also here: the product of the learning-rate reductions of rollbacks (a stage made after one
starts with it), and the stall window that ends the quasi-Newton stage when the loss stops
falling on the same points. The state is the checkpoint's ``optimizer``, ``scheduler``,
``qn``, ``lr_factor`` and ``stall`` keys.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig

from pinn import distributed
from pinn.config import choice
from pinn.optim.gauss_newton import LevenbergMarquardt, System
from pinn.optim.stages import build_quasi_newton, load_quasi_newton
from pinn.training.events import EventLog
from pinn.training.ranks import Ranks

# The loss on the current points: () -> (total, {term: value}), scalar tensors.
Loss = Callable[[], Tuple[torch.Tensor, Dict[str, torch.Tensor]]]
# The same with its gradient left in the parameters' .grad (eager, or a replayed CUDA graph:
# pinn.training.capture).
Evaluation = Loss


def make_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    kind = choice(cfg.scheduler)
    if kind == "exponential":
        gamma = cfg.decay_rate ** (1.0 / cfg.decay_steps)
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(total_steps, 1), eta_min=cfg.lr * cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _summed(total: torch.Tensor, terms: Dict[str, torch.Tensor]
            ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The loss and its terms summed over the ranks (this rank's contributions make the global
    values; unchanged on one process), detached."""
    names = list(terms)
    summed = distributed.all_sum(torch.stack([total.detach(),
                                              *(terms[k].detach() for k in names)]))
    return summed[0], dict(zip(names, summed[1:]))


class Optimizers:
    """Adam (:attr:`adam`, :attr:`scheduler`) and the quasi-Newton stage (:attr:`qn`, None
    until it starts) over ``params``.

    Args:
        cfg: the run config (``optim``, ``trainer``).
        params: the network's parameters.
        events: where the stage's start, resets and stops are recorded.
    """

    def __init__(self, cfg: DictConfig, params: List[torch.Tensor], events: EventLog):
        o, tc = cfg.optim, cfg.trainer
        self.cfg, self.params, self.events = o, params, events
        self.adam = torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas),
                                     weight_decay=o.weight_decay)
        self.scheduler = make_scheduler(o, self.adam, tc.steps)
        self.qn = None  # the quasi-Newton stage, made when it starts
        self.lr_factor = 1.0  # product of the rollback learning-rate reductions
        self.stall_iterations, self.stall_rtol = tc.stall_iterations, tc.stall_rtol
        self.stall: Optional[tuple] = None  # (step, loss) where the stall window began

    def adam_step(self, evaluate: Evaluation, ranks: Ranks) -> Dict[str, torch.Tensor]:
        """One Adam step on ``evaluate()`` (the total and its terms, the gradient in ``.grad``);
        returns the terms before the update as 0-d tensors (on several ranks, their global values), read by nobody here: on
        a GPU the step queues without waiting for the device. A non-finite loss or gradient
        makes the parameters non-finite; the trainer's guard finds that at its next boundary
        and rolls the step back (:class:`pinn.training.rollback.RollbackGuard`)."""
        total, terms = evaluate()
        ranks.reduce_gradients(self.params)
        names = ["total", *terms]
        stacked = torch.stack([total.detach(), *(v.detach() for v in terms.values())])
        # Several ranks: the terms are contributions, summed to the global means.
        values = dict(zip(names, distributed.all_sum(stacked).unbind()))
        self.adam.step()
        self.scheduler.step()
        return values

    def start_qn(self, step: int) -> None:
        self.qn = build_quasi_newton(self.cfg, self.params, self.lr_factor)
        self.events.add(step, f"quasi-Newton stage: {self.qn.name}")

    def qn_step(self, step: int, loss: Loss, ranks: Ranks,
                system: Optional[System] = None, gradient: Optional[Evaluation] = None
                ) -> Tuple[Dict[str, float], Optional[str]]:
        """One iteration of the quasi-Newton stage on ``loss()``: its terms, and why training
        stops here (the loss stalled, or the line search cannot progress) or None.
        ``system``: the Gauss-Newton normal equations (A, g, R'R) of this rank's points, for
        ``optim.qn=lm``; ``gradient``: the loss with its gradient in ``.grad`` (default:
        ``loss()`` and ``backward()``)."""
        if isinstance(self.qn, LevenbergMarquardt):
            return self._lm_step(step, loss, ranks, system)

        def evaluate():
            # On several ranks the global loss and gradient, the same on every rank, so that
            # every rank's line search takes the same decisions.
            if gradient is not None:
                total, terms = gradient()
            else:
                total, terms = loss()
                total.backward()
            if ranks.group is None:
                return total, terms
            ranks.reduce_gradients(self.params)
            return _summed(total, terms)

        terms = self.qn.step(evaluate)
        stop = self._check_stall(step, terms["total"])
        info = self.qn.last
        if info.get("reset"):
            self.events.add(step, f"{self.qn.name}: inverse Hessian reset ({info['reset']})")
        if info.get("stalled"):
            stop = (f"{self.qn.name}: {info['stalled']}; training stopped "
                    f"(optim.on_line_search_failure="
                    f"{choice(self.cfg.on_line_search_failure)})")
            self.events.add(step, stop)
        return terms, stop

    def _lm_step(self, step: int, loss: Loss, ranks: Ranks,
                 system: System) -> Tuple[Dict[str, float], Optional[str]]:
        """One Levenberg-Marquardt iteration; on several ranks the normal equations and the
        loss are summed over them, so that every rank takes the same step."""
        def values() -> Dict[str, float]:
            total, terms = _summed(*loss())
            return {"total": float(total), **{k: float(v) for k, v in terms.items()}}

        def summed_system():
            A, g, RR = system()
            if ranks.group is None:
                return A, g, RR
            flat = distributed.all_sum(torch.cat([A.reshape(-1), g, RR.reshape(1)]))
            n = g.numel()
            return flat[:n * n].view(n, n), flat[n * n:n * n + n], flat[-1]

        terms = self.qn.step(summed_system, values)
        stop = self._check_stall(step, terms["total"])
        stalled = self.qn.last.get("stalled")
        if stalled:
            stop = f"{stalled}; training stopped"
            self.events.add(step, stop)
        return terms, stop

    def _check_stall(self, step: int, loss: float) -> Optional[str]:
        """End the quasi-Newton stage when, over ``trainer.stall_iterations`` iterations on the
        same points, the loss fell by less than ``trainer.stall_rtol`` of itself. The window
        starts again at every change of objective and after each check that passed."""
        n, rtol = self.stall_iterations, self.stall_rtol
        if not n or not math.isfinite(loss):
            return None
        if self.stall is None:
            self.stall = (step, loss)
            return None
        start, loss0 = self.stall
        if step + 1 - start < n:
            return None
        stop = None
        if loss0 - loss <= rtol * abs(loss0):
            stop = (f"{self.qn.name}: no progress, the loss went from {loss0:.6e} to {loss:.6e} "
                    f"in {step + 1 - start} iterations (less than trainer.stall_rtol={rtol:g} "
                    f"of itself in trainer.stall_iterations={n}); training stopped")
            self.events.add(step + 1, stop)
        self.stall = (step + 1, loss)
        return stop

    def new_objective(self) -> None:
        """Same parameters, another function (a BN calibration): the stage's cached evaluation
        is dropped, its curvature kept; the stall window starts again."""
        if self.qn is not None:
            self.qn.invalidate()
        self.stall = None

    def new_points(self, step: int) -> None:
        """A redraw: as :meth:`new_objective`, and a dense inverse Hessian that is no longer
        positive definite is reset (an event says so)."""
        self.stall = None
        if self.qn is not None:
            self.qn.invalidate()
            check = getattr(self.qn, "ensure_positive_definite", None)
            if check is not None and check():
                self.events.add(step, f"{self.qn.name}: inverse Hessian not positive definite "
                                      "at a redraw; reset to the identity")

    def scale_lr(self, factor: float) -> None:
        """Every learning rate, now and as scheduled, times ``factor`` (a rollback)."""
        self.lr_factor *= factor
        for group in self.adam.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        self.scheduler.base_lrs = [b * factor for b in self.scheduler.base_lrs]
        if self.qn is not None:
            for group in self.qn.param_groups:
                if "lr" in group:  # L-BFGS; the dense methods' steps come from the line search
                    group["lr"] *= factor

    def scalars(self, stage: str) -> Dict[str, float]:
        """The logged state of ``stage``: Adam's learning rate, or the last line search's."""
        if stage == "adam":
            return {"adam/lr": self.adam.param_groups[0]["lr"]}
        return {f"qn/{k}": float(v) for k, v in self.qn.last.items()
                if k in ("step", "evaluations", "tau", "phi", "mu", "rho", "tries")}

    def metrics(self, steps: int, adam_steps: int) -> Dict[str, int]:
        if self.qn is None:
            return {}
        return {"qn_iterations": steps - adam_steps, "qn_evaluations": self.qn.evaluations}

    def state_dict(self) -> Dict[str, object]:
        return {"optimizer": self.adam.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "qn": self.qn.state_dict() if self.qn is not None else None,
                "lr_factor": self.lr_factor,
                "stall": None if self.stall is None else list(self.stall)}

    def load_state_dict(self, state: Dict[str, object]) -> Optional[str]:
        """Continue from :meth:`state_dict`; returns a note when the saved quasi-Newton stage
        ran another method (its state converted, :func:`pinn.optim.stages.load_quasi_newton`)."""
        self.adam.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.qn = None
        qn_state = state.get("qn", state.get("lbfgs"))  # "lbfgs": checkpoints before optim.qn
        note = None
        if qn_state is not None:
            self.qn, note = load_quasi_newton(self.cfg, self.params, float(state["lr_factor"]),
                                              qn_state)
        self.lr_factor = float(state["lr_factor"])
        stall = state.get("stall")
        self.stall = None if stall is None else (int(stall[0]), float(stall[1]))
        return note
