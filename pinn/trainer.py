"""The training loop: Adam with a schedule, then a quasi-Newton stage; redraws of the points,
evaluation and checkpoints.

No printing here: everything a user sees goes through :class:`pinn.logs.RunLogger`.
"""
from __future__ import annotations

import copy
import math
import os
import signal
import time
from typing import Callable, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pinn import distributed
from pinn.checkpoint import Checkpoint, save_checkpoint
from pinn.data import Observations
from pinn.config import choice
from pinn.device import device_info
from pinn.divergence import custom_scalar_layout, field_names, measure_divergence
from pinn.fields import taylor_reason
from pinn.evaluation import EvalGrid, grid_errors, make_eval_grid, node_errors, predict_grid
from pinn.figures import grid_figures, headline
from pinn.logs import RunLogger
from pinn.losses import (CausalWeighting, boundary_values_per_pair, grad_norm_weights,
                         loss_terms, residual_magnitude, weighted_total)
from pinn.nn.norm import bn_layers, calibrate_bn, running_statistics_fixed, set_bn_mode
from pinn.optim.stages import build_quasi_newton, load_quasi_newton
from pinn.paths import RunPaths
from pinn.pdes.problem import PDE
from pinn.sampling import Batch, Sampler
from pinn.taylor import compile_events, compile_seconds, compile_status


def make_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    kind = choice(cfg.scheduler)
    if kind == "exponential":
        gamma = cfg.decay_rate ** (1.0 / cfg.decay_steps)
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(total_steps, 1), eta_min=cfg.lr * cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


class Trainer:
    """Trains ``model`` on ``pde`` as the run config says.

    Args:
        cfg: the composed run config.
        model: network in the run's precision.
        pde: the problem.
        paths: artifact locations of the run.
        logger: TensorBoard / progress / metrics sink.
        grid: evaluation grid with reference (computed here if not given).
        data: observations for the data term (:class:`pinn.data.Observations`), or None.
    """

    def __init__(self, cfg: DictConfig, model: nn.Module, pde: PDE, paths: RunPaths,
                 logger: RunLogger, grid: Optional[EvalGrid] = None,
                 data: Optional[Observations] = None):
        self.cfg, self.model, self.pde, self.paths, self.logger = cfg, model, pde, paths, logger
        first = next(model.parameters())
        self.dtype, self.device = first.dtype, first.device  # the run's; see pinn.device
        # One rank of several under torchrun (pinn.distributed), or None: one process.
        self.group = distributed.current()
        # Where the survivors of a lost rank count each other (see distributed.census).
        self.census_dir = (None if self.group is None else
                           paths.root / distributed.CENSUS / distributed.census_token())
        # Observations are fixed for the whole run (never redrawn), on the run's device; on
        # one rank of several, this rank's slice of them (global_data: all of them).
        self.global_data = None if data is None else data.to(self.dtype, self.device)
        self.data, self.data_share = self.global_data, 1.0
        if self.group is not None and data is not None:
            self.data, self.data_share = distributed.shard_observations(self.global_data,
                                                                        self.group)
        self.learned = getattr(model, "pde_params", None)  # inverse problems' coefficients
        s = cfg.sampler
        rad = (s.rad_k, s.rad_c, s.rad_oversample) if choice(s.adaptive) == "rad" else None
        self.sampler = Sampler(choice(s.kind), s.n_interior, s.n_initial, s.n_boundary,
                               pde.domain, self.dtype,
                               torch.Generator().manual_seed(cfg.seed), rad=rad,
                               device=self.device)
        self.global_batch = self.batch = self.sampler.sample()
        self.shares: Optional[Dict[str, float]] = None  # see _set_batch
        self._set_batch(self.global_batch)
        self.weights = {k: float(v) for k, v in cfg.loss.weights.items()}
        if not pde.axes.time:  # a steady problem has no initial condition
            self.weights.pop("ic", None)
        if pde.equations:  # loss.weights.res scales every equation without a weight of its own
            res = self.weights.pop("res", 1.0)
            for name in pde.equations:
                self.weights.setdefault(f"res_{name}", res)
        lc = cfg.loss
        self.causal = (CausalWeighting(lc.causal_eps, lc.causal_chunks, *pde.domain.time)
                       if lc.causal else None)
        if self.causal is not None and self.group is not None:
            self.causal.reduce = distributed.all_sum
        o = cfg.optim
        self.optimizer = torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.betas),
                                          weight_decay=o.weight_decay)
        self.scheduler = make_scheduler(o, self.optimizer, cfg.trainer.steps)
        self.qn = None  # the quasi-Newton stage (pinn.optim.stages), made when it starts
        self.grid = grid if grid is not None else make_eval_grid(pde, cfg.pde)
        self.step = 0
        self.stage = "adam"
        self.train_seconds = 0.0  # optimizer steps, without compilation
        self.compile_seconds = 0.0  # torch.compile time paid inside steps
        self.loop_seconds = 0.0  # the whole loop (steps, redraws, evaluations, checkpoints)
        self.stage_seconds = {"adam": 0.0, "qn": 0.0}  # optimizer steps per stage
        self._rate_mark = (0, 0.0)  # (step, train_seconds) where the logged rate's window began
        self._stall: Optional[tuple] = None  # (step, loss) where the stall window began
        self.resample_seconds = 0.0
        self.stop_reason: Optional[str] = None  # training ended early (budget, stalled search)
        self._compile_events0 = len(compile_events())  # earlier runs in this process
        self.last_terms: Dict[str, float] = {}
        self.last_errors: Dict[str, float] = {}
        self.last_divergence: Dict[str, float] = {}
        self.divergence_seconds = 0.0
        self.events: list = []  # BN freezes and calibrations, with their steps
        self.rollbacks = 0  # non-finite recoveries so far
        self.lr_factor = 1.0  # product of the rollback learning-rate reductions
        self.stop_requested: Optional[str] = None  # set by a signal handler: "SIGTERM", ...
        # Called at each evaluation with (step, {"error/...": .., "loss/...": ..}); a returned
        # text stops the run as pruned (a search's trial reporter, pinn.sweep.trial).
        self.monitor: Optional[Callable[[int, Dict[str, float]], Optional[str]]] = None
        self.prune_reason: Optional[str] = None
        self._over_budget = False  # the ranks' common budget decision (distributed runs)
        self._clock: Optional[tuple] = None  # (loop start, loop seconds before, budget)
        self._snapshot: Optional[dict] = None  # the state before this step (distributed runs)
        self.allreduce_bytes = 0  # bytes all-reduced by the last loss evaluation
        self._nan_injected = False
        self._good: Optional[Dict[str, object]] = None  # last state known to be finite
        self.engine: Optional[str] = None  # derivative engine in use (see _engine)
        self.has_bn = bool(bn_layers(model))
        if self.has_bn and cfg.log.divergence_every > 0:
            # A fixed probe set, drawn from its own generator so it never shifts the training
            # points of a seed.
            probe = Sampler("sobol", cfg.log.divergence_points, 1, 0, pde.domain, self.dtype,
                            torch.Generator().manual_seed(cfg.seed + 7919),
                            device=self.device).sample()
            self.probe = probe.interior
            logger.custom_scalars(custom_scalar_layout(len(bn_layers(model)),
                                                       field_names(pde)))

    @property
    def bn_mode(self) -> Optional[str]:
        return bn_layers(self.model)[0].mode if self.has_bn else None

    def _set_batch(self, batch: Batch) -> None:
        """Train on ``batch`` from now on: on one rank of several, on this rank's slice of it,
        each loss term weighted by the share of its set the slice holds."""
        self.global_batch = batch
        if self.group is None:
            self.batch, self.shares = batch, None
            return
        self.batch, self.shares = distributed.shard_batch(batch, self.group,
                                                          boundary_values_per_pair(self.pde))
        self.shares["data"] = self.data_share

    # -- batch normalization ------------------------------------------------------------
    def calibrate(self, reason: str) -> None:
        """Exact population statistics of the current interior points, in one pass."""
        calibrate_bn(self.model, self.batch.interior)
        if self.qn is not None:
            self.qn.invalidate()  # same parameters, different function
        self._stall = None
        self.events.append({"step": self.step, "event": f"calibrate ({reason})"})

    def freeze(self, reason: str) -> None:
        """Calibrate, then train on with the calibrated statistics as constants."""
        if self.has_bn and self.bn_mode != "frozen":
            self.calibrate(reason)
            set_bn_mode(self.model, "frozen")
            self.events.append({"step": self.step, "event": f"freeze ({reason})"})

    # -- one step -----------------------------------------------------------------------
    def _engine(self) -> str:
        """The derivative engine for this step; a change is recorded once as an event."""
        requested = choice(self.cfg.derivatives.engine)
        reason = None
        if requested != "autograd":
            reason = taylor_reason(self.model, self.pde.wanted)
        engine = "autograd" if requested == "autograd" or reason else "taylor"
        if engine != self.engine:
            self.engine = engine
            note = f" (taylor: {reason})" if reason else ""
            self.events.append({"step": self.step, "event": f"derivatives engine: {engine}{note}"})
        return engine

    def _loss(self):
        terms = loss_terms(self.model, self.pde, self.batch, engine=self._engine(),
                           compile=bool(self.cfg.derivatives.compile), causal=self.causal,
                           data=self.data, shares=self.shares)
        total = weighted_total(terms, self.weights)
        if self.cfg.trainer.debug_nan_at == self.step and not self._nan_injected:
            # Fault injection for tests of the non-finite policies: one NaN, once.
            self._nan_injected = True
            total = total * float("nan")
        return total, terms

    def adam_step(self) -> Dict[str, float]:
        """One Adam step on the current batch; returns the loss terms before the update."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, terms = self._loss()
        total.backward()
        self._reduce_gradients()
        # One device-to-host transfer per step (each .item() or bool() on a GPU tensor waits
        # for the device): the loss terms and whether every gradient is finite, together.
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all() if grads else None
        names = ["total", *terms]
        stacked = [total.detach(), *(v.detach() for v in terms.values())]
        if finite is not None:
            stacked.append(finite.to(total.dtype))
        # Several ranks: the terms are contributions, summed to the global means; the
        # gradients are already the same on every rank, so is the finite flag (summed too).
        numbers = distributed.all_sum(torch.stack(stacked)).tolist()
        values = dict(zip(names, numbers))
        world = 1 if self.group is None else self.group.world
        grads_finite = finite is None or numbers[-1] == float(world)
        if not grads_finite:
            values["grad_norm"] = float("nan")
        if math.isfinite(values["total"]) and grads_finite:  # never step on a poisoned gradient
            self.optimizer.step()
            self.scheduler.step()
        return values

    def _evaluate_loss(self):
        """Loss and parameter gradient on the current batch (the quasi-Newton closure); on
        several ranks the global loss and gradient, the same on every rank, so that every
        rank's line search takes the same decisions."""
        total, terms = self._loss()
        total.backward()
        if self.group is None:
            return total, terms
        self._reduce_gradients()
        names = list(terms)
        summed = distributed.all_sum(torch.stack([total.detach(),
                                                  *(terms[k].detach() for k in names)]))
        return summed[0], dict(zip(names, summed[1:]))

    def _reduce_gradients(self) -> None:
        """Several ranks: each parameter gradient becomes the sum of the ranks' (one
        all-reduce); nothing on one process."""
        if self.group is not None:
            self.allreduce_bytes = distributed.reduce_gradients(list(self.model.parameters()))

    def qn_step(self) -> Dict[str, float]:
        """One quasi-Newton iteration (``optim.qn``) on the current batch."""
        if self.qn is None:
            self.qn = build_quasi_newton(self.cfg.optim, list(self.model.parameters()),
                                         self.lr_factor)
            self.events.append({"step": self.step, "event": f"quasi-Newton stage: {self.qn.name}"})
            if self.causal is not None:  # one objective per line search: weights held
                self.causal.hold()
        self.model.train()
        terms = self.qn.step(self._evaluate_loss)
        self._check_stall(terms["total"])
        info = self.qn.last
        if info.get("reset"):
            self.events.append({"step": self.step,
                                "event": f"{self.qn.name}: inverse Hessian reset ({info['reset']})"})
        if info.get("stalled"):
            self.stop_reason = (f"{self.qn.name}: {info['stalled']}; training stopped "
                                f"(optim.on_line_search_failure="
                                f"{choice(self.cfg.optim.on_line_search_failure)})")
            self.events.append({"step": self.step, "event": self.stop_reason})
        return terms

    def _check_stall(self, loss: float) -> None:
        """End the quasi-Newton stage when, over ``trainer.stall_iterations`` iterations on the
        same points, the loss fell by less than ``trainer.stall_rtol`` of itself. The window
        starts again at every redraw (a new objective) and after each check that passed."""
        n, rtol = self.cfg.trainer.stall_iterations, self.cfg.trainer.stall_rtol
        if not n or not math.isfinite(loss):
            return
        if self._stall is None:
            self._stall = (self.step, loss)
            return
        start, loss0 = self._stall
        if self.step + 1 - start < n:
            return
        if loss0 - loss <= rtol * abs(loss0):
            self.stop_reason = (
                f"{self.qn.name}: no progress, the loss went from {loss0:.6e} to {loss:.6e} in "
                f"{self.step + 1 - start} iterations (less than trainer.stall_rtol={rtol:g} of "
                f"itself in trainer.stall_iterations={n}); training stopped")
            self.events.append({"step": self.step + 1, "event": self.stop_reason})
        self._stall = (self.step + 1, loss)

    # -- collocation points -------------------------------------------------------------
    def _residual_magnitude(self, points: torch.Tensor) -> torch.Tensor:
        """|r| at candidate points (M, d), by the predict-mode network (no statistics
        change)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return residual_magnitude(self.model, self.pde, points, engine=self._engine(),
                                      compile=bool(self.cfg.derivatives.compile),
                                      chunk=max(self.cfg.sampler.n_interior, 1))
        finally:
            self.model.train(was_training)

    def rebalance(self) -> None:
        """Move the loss weights towards equal gradient norms on the current batch."""
        m = float(self.cfg.loss.balance_momentum)
        self.model.train()
        with running_statistics_fixed(self.model):
            terms = loss_terms(self.model, self.pde, self.batch, engine=self._engine(),
                               compile=bool(self.cfg.derivatives.compile), causal=self.causal,
                               data=self.data, shares=self.shares)
            reduce = None if self.group is None else distributed.all_sum
            new = grad_norm_weights(self.model, terms, reduce=reduce)
        keys = list(new) + [k for k in self.weights if k not in new]
        self.weights = {k: m * self.weights.get(k, 1.0) + (1 - m) * new.get(k, 1.0) for k in keys}

    def resample(self) -> None:
        """New collocation points (RAD when configured); the quasi-Newton curvature is kept."""
        t0 = time.perf_counter()
        adaptive = choice(self.cfg.sampler.adaptive) == "rad"
        # Every rank draws the same global set; RAD's candidate residuals are computed a slice
        # per rank and gathered, so every rank selects the same points.
        residual = (lambda p: distributed.sharded_map(self._residual_magnitude, p))
        self._set_batch(self.sampler.sample(residual if adaptive else None))
        self._stall = None  # a new objective: the stall window starts again
        if self.causal is not None:
            self.causal.release()
        if choice(self.cfg.loss.balance) == "grad_norm":
            self.rebalance()
        if self.qn is not None:
            self.qn.invalidate()
            check = getattr(self.qn, "ensure_positive_definite", None)
            if check is not None and check():
                self.events.append({"step": self.step, "event": (
                    f"{self.qn.name}: inverse Hessian not positive definite at a redraw; "
                    "reset to the identity")})
        self.resample_seconds += time.perf_counter() - t0

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, with_figure: bool = True) -> Dict[str, float]:
        """Errors of the predict-mode network against the reference; logged at ``self.step``.
        On several ranks, rank 0 alone evaluates (the others return nothing)."""
        if not distributed.is_writer():
            return {}
        pred = predict_grid(self.model, self.grid)
        # At a reference file's nodes where the problem has one, else on the grid.
        errors = node_errors(self.model, self.pde) or grid_errors(pred, self.grid, self.pde)
        self.logger.scalars({f"error/{k}": v for k, v in errors.items()}, self.step)
        if with_figure and self.cfg.log.figures and self.logger.writer is not None:
            ref = self.grid.reference
            for k, name in enumerate(self.pde.outputs):
                ref_k = None if ref is None else ref[..., k]
                title = headline(self.cfg.pde.name, self.step, pred[..., k], ref_k, name,
                                 self.paths.root.name)
                for suffix, fig in grid_figures(self.grid.axes, self.grid.coords, pred[..., k],
                                                ref_k, name, title):
                    self.logger.figure(f"prediction/{name}{suffix}", fig, self.step)
        self.last_errors = errors
        return errors

    def training_state(self) -> Dict[str, object]:
        """Everything the loop needs to continue exactly from here (tensors, numbers, strings,
        lists and dicts only, so that a checkpoint loads with ``weights_only=True``)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "qn": self.qn.state_dict() if self.qn is not None else None,
            "batch": self.global_batch.state_dict(),
            "step": self.step,
            "stage": self.stage,
            "bn_mode": self.bn_mode,
            "events": list(self.events),
            "train_seconds": self.train_seconds,
            "compile_seconds": self.compile_seconds,
            "loop_seconds": self.loop_seconds,
            "stage_seconds": dict(self.stage_seconds),
            "resample_seconds": self.resample_seconds,
            "divergence_seconds": self.divergence_seconds,
            "last_terms": dict(self.last_terms),
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
            "engine": self.engine,
            "weights": dict(self.weights),
            "stall": None if self._stall is None else list(self._stall),
            "causal": None if self.causal is None else self.causal.state_dict(),
        }

    def load_training_state(self, state: Dict[str, object]) -> None:
        """Continue from :meth:`training_state` (a checkpoint's or an in-memory snapshot)."""
        self.model.load_state_dict(state["model"])
        if state["bn_mode"] is not None:
            set_bn_mode(self.model, state["bn_mode"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.qn = None
        qn_state = state.get("qn", state.get("lbfgs"))  # "lbfgs": checkpoints before optim.qn
        qn_note = None
        if qn_state is not None:
            self.qn, qn_note = load_quasi_newton(self.cfg.optim, list(self.model.parameters()),
                                                 float(state["lr_factor"]), qn_state)
        # A checkpoint holds CPU tensors (pinn.device.to_cpu): the batch comes back to the run's
        # device; the model and optimizers copy their state onto their parameters' device.
        # The global batch: a checkpoint of N ranks resumes on M.
        self._set_batch(Batch.from_state(state["batch"], self.device))
        self.step, self.stage = int(state["step"]), str(state["stage"])
        self.events = list(state["events"])
        if qn_note:
            self.events.append({"step": self.step, "event": qn_note})
        self.train_seconds = float(state["train_seconds"])
        self.compile_seconds = float(state.get("compile_seconds", 0.0))
        self.loop_seconds = float(state.get("loop_seconds", 0.0))
        self.stage_seconds = dict(state.get("stage_seconds", {"adam": 0.0, "qn": 0.0}))
        self.resample_seconds = float(state.get("resample_seconds", 0.0))
        self.divergence_seconds = float(state["divergence_seconds"])
        self.last_terms = dict(state["last_terms"])
        self.rollbacks, self.lr_factor = int(state["rollbacks"]), float(state["lr_factor"])
        self.engine = state["engine"]
        self.weights = dict(state.get("weights", self.weights))
        self._rate_mark = (self.step, self.train_seconds)
        stall = state.get("stall")
        self._stall = None if stall is None else (int(stall[0]), float(stall[1]))
        if self.causal is not None and state.get("causal") is not None:
            self.causal.load_state_dict(state["causal"], self.batch.interior)

    def save(self) -> None:
        """Write checkpoints/last.pt atomically; the previous one stays until this one is whole.
        Several ranks hold the same state: rank 0 writes it."""
        if distributed.is_writer():
            self._write_checkpoint()
        self._keep_good_state()

    def _keep_good_state(self) -> None:
        """Copy the state for a rollback (:meth:`_recover`), the previous copy dropped first:
        with a dense quasi-Newton stage each copy holds an n x n inverse Hessian."""
        self._good = None
        self._good = copy.deepcopy(self.training_state())

    def _write_checkpoint(self) -> None:
        save_checkpoint(
            Checkpoint(model=self.model.state_dict(), step=self.step, stage=self.stage,
                       config_yaml=OmegaConf.to_yaml(self.cfg, resolve=True),
                       extra={"bn_mode": self.bn_mode, "training": self.training_state()}),
            self.paths.last_checkpoint)

    # -- the loop -----------------------------------------------------------------------
    def _after_step(self, terms: Dict[str, float]) -> None:
        self.step += 1
        tc = self.cfg.trainer
        self.last_terms = terms
        if self.learned is not None:  # every step: the coefficients are what an inverse run is for
            self.logger.scalars({f"params/{k}": v for k, v in self.learned.as_floats().items()},
                                self.step)
        if self.step % tc.log_every == 0 or self.step == self.total_steps:
            values = {f"loss/{k}": v for k, v in terms.items()}
            values.update({f"weight/{k}": w for k, w in self.weights.items()})
            if self.causal is not None and self.causal.last is not None:
                # The smallest slice weight: 1 once every slice of time is resolved.
                values["causal/min_weight"] = float(self.causal.last.min())
            kind = "adam" if self.stage == "adam" else "qn"
            if kind == "adam":
                values["adam/lr"] = self.optimizer.param_groups[0]["lr"]
            else:
                info = self.qn.last
                values.update({f"qn/{k}": float(v) for k, v in info.items()
                               if k in ("step", "evaluations", "tau", "phi")})
            # The rate of this logging window (optimizer steps only, compilation excluded),
            # one curve per stage; metrics.json keeps the whole-run average.
            step0, seconds0 = self._rate_mark
            rate = (self.step - step0) / max(self.train_seconds - seconds0, 1e-9)
            self._rate_mark = (self.step, self.train_seconds)
            values[f"speed/{kind}_steps_per_s"] = rate
            self.logger.scalars(values, self.step)
            self.logger.progress(self.step, terms["total"], rate, self.stage,
                                 budget_left=self._budget_left())
        if self.step % tc.eval_every == 0 and self.step != self.total_steps:
            errors = self.evaluate()
            if self.monitor is not None:
                values = {**{f"error/{k}": v for k, v in errors.items()},
                          **{f"loss/{k}": v for k, v in terms.items()}}
                self.prune_reason = self.monitor(self.step, values)
        de = self.cfg.log.divergence_every
        if self.has_bn and de and self.step % de == 0:
            self.divergence()
        if self.step % tc.checkpoint_every == 0:
            self.save()
        if self.group is not None:
            self._agree_on_stopping()

    def _budget_left(self) -> Optional[float]:
        """Seconds of ``trainer.max_minutes`` left, or None without a budget."""
        if self._clock is None or self._clock[2] is None:
            return None
        loop0, before, budget = self._clock
        return max(budget - (before + time.perf_counter() - loop0), 0.0)

    def _agree_on_stopping(self) -> None:
        """Several ranks: a signal, a pruned trial or the time budget seen by any rank stops
        every rank after the same step (one small all-reduce per step)."""
        loop0, before, budget = self._clock
        over = budget is not None and before + time.perf_counter() - loop0 >= budget
        signum = signal.Signals[self.stop_requested].value if self.stop_requested else 0
        signum, pruned, over = distributed.agree(
            [signum, self.prune_reason is not None, over], self.global_batch.interior)
        if signum and not self.stop_requested:
            self.stop_requested = signal.Signals(int(signum)).name
        if pruned and not self.prune_reason:
            self.prune_reason = "pruned by the search at rank 0's evaluation"
        self._over_budget = bool(over)

    def divergence(self) -> Dict[str, float]:
        """Forward-vs-predict divergence on the probe set, logged under ``divergence/``. On
        several ranks, rank 0 alone measures it, on the global batch (the single-process
        quantities)."""
        if not distributed.is_writer():
            return {}
        t0 = time.perf_counter()
        with distributed.local():
            values = measure_divergence(self.model, self.pde, self.probe, self.global_batch,
                                        self.weights, data=self.global_data)
        self.divergence_seconds += time.perf_counter() - t0
        self.logger.scalars({f"divergence/{k}": v for k, v in values.items()}, self.step)
        self.last_divergence = values
        return values

    @property
    def total_steps(self) -> int:
        return self.cfg.trainer.steps + self.cfg.trainer.qn_steps

    # -- faults -------------------------------------------------------------------------
    def _apply_lr_factor(self, factor: float) -> None:
        self.lr_factor *= factor
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        self.scheduler.base_lrs = [b * factor for b in self.scheduler.base_lrs]
        if self.qn is not None:
            for group in self.qn.param_groups:
                if "lr" in group:  # L-BFGS; the dense methods' steps come from the line search
                    group["lr"] *= factor

    def _recover(self, bad_step: int) -> Optional[str]:
        """Handle a non-finite loss or gradient at ``bad_step``; returns a stop message, or None
        when training goes on from the last good state with a lower learning rate."""
        tc = self.cfg.trainer
        self.qn = None  # its state is replaced: free it before the copy (see _keep_good_state)
        self.load_training_state(copy.deepcopy(self._good))
        policy = choice(tc.on_nonfinite)
        if policy == "rollback" and self.rollbacks < tc.max_rollbacks:
            self.rollbacks += 1
            self._apply_lr_factor(tc.rollback_lr_factor)
            self.events.append({"step": bad_step, "event": (
                f"non-finite loss or gradient: rolled back to step {self.step}, learning rate "
                f"x{self.lr_factor:g} (rollback {self.rollbacks} of {tc.max_rollbacks})")})
            self.logger.scalars({"nonfinite/rollbacks": self.rollbacks,
                                 "nonfinite/lr_factor": self.lr_factor}, bad_step)
            return None
        why = ("trainer.on_nonfinite=stop" if policy == "stop"
               else f"{tc.max_rollbacks} rollbacks (trainer.max_rollbacks) used up")
        self.events.append({"step": bad_step, "event": f"non-finite loss or gradient: stopped "
                                                       f"({why}); state of step {self.step} kept"})
        self.save()
        return (f"non-finite loss or gradient at step {bad_step}; stopped ({why}). The checkpoint "
                f"holds the last finite state, step {self.step}: {self.paths.last_checkpoint}")

    # -- the run ------------------------------------------------------------------------
    def fit(self) -> Dict[str, object]:
        """Run Adam then the quasi-Newton stage from the current step; evaluate, checkpoint and
        return the final metrics. ``metrics["status"]`` is ``completed`` (also when training
        ended early: time budget, a line search that cannot progress; see ``stopped_early``),
        ``interrupted`` (a signal set :attr:`stop_requested`; a checkpoint was written),
        ``pruned`` (a search's pruner stopped the trial at an evaluation; a checkpoint was
        written; the errors are those of that evaluation) or ``diverged``."""
        wall0 = time.perf_counter()
        tc = self.cfg.trainer
        if self.step == 0:
            self.save()  # a run killed at any moment after this can be resumed
        else:
            self._keep_good_state()
        loop0, loop_before = time.perf_counter(), self.loop_seconds
        budget = None if tc.max_minutes is None else 60.0 * tc.max_minutes
        self._clock = (loop0, loop_before, budget)
        while self.step < self.total_steps and self.stop_reason is None:
            self.loop_seconds = loop_before + time.perf_counter() - loop0
            # Several ranks decide together (their clocks differ): see _agree_on_stopping.
            over = self._over_budget if self.group is not None else (
                budget is not None and self.loop_seconds >= budget)
            if over:
                compiled = (f" ({self.compile_seconds:.0f} s of it compiling)"
                            if self.compile_seconds >= 1 else "")
                self.stop_reason = (f"time budget trainer.max_minutes={tc.max_minutes:g} "
                                    f"reached{compiled}")
                self.events.append({"step": self.step, "event": self.stop_reason})
                break
            try:
                outcome = self._iteration(wall0)
            except Exception as e:  # noqa: BLE001 - only a failed collective is handled
                if not distributed.is_communication_error(e):
                    raise
                return self._rank_lost(e, wall0)
            if outcome is not None:
                return outcome
        self.loop_seconds = loop_before + time.perf_counter() - loop0
        if self.has_bn and self.cfg.bn.calibrate_at_end and self.bn_mode != "frozen":
            self.calibrate("end of training")
        if self.has_bn and self.cfg.log.divergence_every:
            self.divergence()
        errors = self.evaluate()
        self.save()
        return self._metrics("completed", wall0, errors)

    def _iteration(self, wall0: float) -> Optional[Dict[str, object]]:
        """One step of the loop (with its redraw, freeze, logging, evaluation, checkpoint);
        returns the run's metrics when the run ends here, else None."""
        tc = self.cfg.trainer
        if self.group is not None:
            dc = self.cfg.distributed
            if dc.debug_kill_at == self.step and dc.debug_kill_rank == self.group.rank:
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection for tests
            # What a lost rank rolls back to (see _rank_lost).
            self._snapshot = {"step": self.step,
                              "model": {k: v.detach().clone()
                                        for k, v in self.model.state_dict().items()},
                              "sampler": self.sampler.state_dict(), "batch": self.global_batch,
                              "weights": dict(self.weights)}
        stage = "adam" if self.step < tc.steps else choice(self.cfg.optim.qn)
        if stage != self.stage or self.step == 0 or self._rate_mark[0] > self.step:
            self._rate_mark = (self.step, self.train_seconds)  # a window is one stage's
        self.stage = stage
        if self.stage != "adam":
            # The line search must see one deterministic function of the parameters.
            self.freeze("quasi-Newton stage")
        elif self.cfg.bn.freeze_at is not None and self.step == self.cfg.bn.freeze_at:
            self.freeze("bn.freeze_at")
        every = self.cfg.sampler.resample_every
        if every and self.step > 0 and self.step % every == 0:
            self.resample()
        t0, c0 = time.perf_counter(), compile_seconds()
        terms = self.adam_step() if self.stage == "adam" else self.qn_step()
        compiling = compile_seconds() - c0
        self.compile_seconds += compiling
        stepping = time.perf_counter() - t0 - compiling
        self.train_seconds += stepping
        self.stage_seconds["adam" if self.stage == "adam" else "qn"] += stepping
        if not (all(math.isfinite(v) for v in terms.values()) and self._params_finite()):
            message = self._recover(self.step)
            if message is not None:
                return self._metrics("diverged", wall0, message=message)
            return None
        self._after_step(terms)
        if self.stop_requested:
            self.save()
            metrics = self._metrics("interrupted", wall0, message=(
                f"{self.stop_requested} received: stopped at step {self.step}, checkpoint "
                f"written to {self.paths.last_checkpoint}"))
            metrics["stopped_by"] = self.stop_requested
            return metrics
        if self.prune_reason:
            self.save()
            self.events.append({"step": self.step, "event": self.prune_reason})
            return self._metrics("pruned", wall0, self.last_errors, message=(
                f"{self.prune_reason}; checkpoint written to {self.paths.last_checkpoint}"))
        return None

    def _rank_lost(self, error: BaseException, wall0: float) -> Dict[str, object]:
        """A collective failed (a rank died, or did not answer within distributed.timeout_s):
        roll back to the last completed step, let the lowest surviving rank write its
        checkpoint, and end the run with status ``failed`` and one line naming the rank."""
        snap = self._snapshot
        if snap is not None and snap["step"] == self.step:  # the step did not complete
            self.model.load_state_dict(snap["model"])
            self.sampler.load_state_dict(snap["sampler"])
            self._set_batch(snap["batch"])
            self.weights = snap["weights"]
        # The survivors count each other in the run folder; the lowest of them becomes the
        # writer (rank 0 may be the one lost) and writes the checkpoint, then metrics.json.
        alive = distributed.census(self.census_dir)
        world = self.group.world
        lost = sorted(set(range(world)) - set(alive))
        who = (f"rank {', '.join(map(str, lost))}" if lost else "another rank")
        if distributed.is_writer():
            self._write_checkpoint()
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        cause = cause if len(cause) <= 120 else cause[:117] + "..."
        message = (f"{who} of {world} stopped answering during step {self.step + 1} "
                   f"({cause}); the run ended on every rank; the checkpoint of step "
                   f"{self.step} is {self.paths.last_checkpoint}")
        self.events.append({"step": self.step, "event": message})
        metrics = self._metrics("failed", wall0, message=message)
        metrics["lost_ranks"] = lost
        return metrics

    def _params_finite(self) -> bool:
        params = list(self.model.parameters())
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())  # one sync

    def _metrics(self, status: str, wall0: float, errors: Optional[Dict[str, float]] = None,
                 message: Optional[str] = None) -> Dict[str, object]:
        tc = self.cfg.trainer
        metrics: Dict[str, object] = {
            "status": status,
            "steps": self.step,  # done; the asked ones below
            "steps_asked": self.total_steps,
            "adam_steps": int(tc.steps),
            "qn_steps": int(tc.qn_steps),
            "qn_method": choice(self.cfg.optim.qn),
            "wall_time_s": time.perf_counter() - wall0,
            "train_time_s": self.train_seconds,
            "loop_time_s": self.loop_seconds,
            "adam_time_s": self.stage_seconds["adam"],
            "qn_time_s": self.stage_seconds["qn"],
            "resample_time_s": self.resample_seconds,
            "steps_per_s": self.step / max(self.train_seconds, 1e-9),
            "reference": self.pde.reference_kind,
            "rollbacks": self.rollbacks,
            "derivatives_engine": self.engine,
            **device_info(self.device),
        }
        if self.group is not None:
            metrics["ranks"] = self.group.world
            metrics["backend"] = self.group.backend
            # One flat gradient per loss evaluation (the loss terms and a few flags besides).
            metrics["allreduce_bytes_per_evaluation"] = self.allreduce_bytes
        if self.cfg.derivatives.compile and self.engine == "taylor":
            metrics["compile_status"] = compile_status(since=self._compile_events0)
            metrics["compile_time_s"] = self.compile_seconds
        if self.qn is not None:
            metrics["qn_iterations"] = self.step - int(tc.steps)
            metrics["qn_evaluations"] = self.qn.evaluations
        if message:
            metrics["message"] = message
        if self.stop_reason:
            metrics["stopped_early"] = self.stop_reason
        metrics.update({f"loss/{k}": v for k, v in self.last_terms.items()})
        if self.learned is not None:
            metrics.update({f"params/{k}": v for k, v in self.learned.as_floats().items()})
            metrics.update({f"params/{k}/rel_error": v
                            for k, v in self.learned.errors().items()})
        if self.data is not None:
            metrics["data_points"] = len(self.data)
        metrics.update({f"error/{k}": v for k, v in (errors or {}).items()})
        if self.has_bn:
            metrics["bn_mode"] = self.bn_mode
            metrics["divergence_time_s"] = self.divergence_seconds
            metrics.update({f"divergence/{k}": v for k, v in self.last_divergence.items()})
        if self.events:
            metrics["events"] = self.events
        return metrics
