"""The training loop: Adam with a schedule, then a quasi-Newton stage; redraws of the points,
evaluation and checkpoints.

The trainer sequences the stages of a step; each concern is a part it calls
(:mod:`pinn.training`): the points and loss weights (:class:`PointSets`), the optimizers
(:class:`Optimizers`), the BN schedule (:class:`BNSchedule`), the rollback guard
(:class:`RollbackGuard`), the other ranks (:class:`Ranks`), the time accounting
(:class:`RunClock`) and the events (:class:`EventLog`). A checkpoint's training state is the
union of their state dicts.

No printing here: everything a user sees goes through :class:`pinn.logs.RunLogger`.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from omegaconf import DictConfig, OmegaConf
from torch import nn

from pinn import distributed
from pinn.checkpoint import Checkpoint, save_checkpoint
from pinn.config import choice
from pinn.data import Observations
from pinn.device import as_floats, device_info
from pinn.evaluation import (EvalGrid, grid_errors, make_eval_grid, node_errors, predict_grid,
                             profiles, quantity_errors, quantity_values, write_profiles)
from pinn.figures import attention_figure, output_figures
from pinn.logs import RunLogger
from pinn.losses import weighted_total
from pinn.paths import RunPaths
from pinn.pdes.problem import PDE
from pinn.residual_vector import blocks, normal_equations
from pinn.training import (BNSchedule, DivergenceProbe, EngineChoice, EventLog, Optimizers,
                           PointSets, Ranks, RollbackGuard, RunClock)
from pinn.training.capture import CapturedEvaluation, capture_refusal, evaluate_eagerly


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
        self.event_log = EventLog()
        self.ranks = Ranks(distributed.current(), paths.root, cfg.distributed)
        self.learned = getattr(model, "pde_params", None)  # inverse problems' coefficients
        self.engine = EngineChoice(cfg.derivatives.engine, model, pde.wanted, self.event_log)
        self.points = PointSets(cfg, model, pde, self.engine, self.ranks.group, data,
                                self.dtype, self.device)
        self.optimizers = Optimizers(cfg, list(model.parameters()), self.event_log)
        self.grid = grid if grid is not None else make_eval_grid(pde, cfg.pde)
        self.step = 0
        self.stage = "adam"
        self.clock = RunClock(cfg.trainer.max_minutes)
        self.stop_reason: Optional[str] = None  # training ended early (budget, stalled search)
        self.last_terms: Dict[str, float] = {}
        self.last_errors: Dict[str, float] = {}
        self.quantities: Dict[str, float] = {}
        self.guard = RollbackGuard(cfg.trainer, self.optimizers, self.event_log, logger)
        self.stop_requested: Optional[str] = None  # set by a signal handler: "SIGTERM", ...
        # Called at each evaluation with (step, {"error/...": .., "loss/...": ..}); a returned
        # text stops the run as pruned (a search's trial reporter, pinn.sweep.trial).
        self.monitor: Optional[Callable[[int, Dict[str, float]], Optional[str]]] = None
        self.prune_reason: Optional[str] = None
        self.figures_failed = False  # a figure that failed to draw turns figures off
        self.bn = BNSchedule(model, cfg.bn, self.event_log)
        self.probe: Optional[DivergenceProbe] = None
        if self.bn.has_bn and cfg.log.divergence_every > 0:
            self.probe = DivergenceProbe(cfg, model, pde, logger)
        self.captured: Optional[CapturedEvaluation] = None  # trainer.cuda_graph on CUDA
        refusal = capture_refusal(cfg, model, self.device, self.ranks.group is not None)
        if refusal is None:
            self.captured = CapturedEvaluation(
                self._loss, list(model.parameters()), batch=lambda: self.points.batch,
                use=self.points.use_batch, key=self._capture_key, events=self.event_log,
                step=lambda: self.step)
        elif self.device.type == "cuda":
            self.event_log.add(0, f"CUDA graph: not used ({refusal})")

    # -- the parts, as the rest of the project reads them ----------------------------------
    events = property(lambda self: self.event_log.items)
    qn = property(lambda self: self.optimizers.qn)
    batch = property(lambda self: self.points.batch)
    global_batch = property(lambda self: self.points.global_batch)
    data = property(lambda self: self.points.data)
    weights = property(lambda self: self.points.weights)
    causal = property(lambda self: self.points.causal)
    bn_mode = property(lambda self: self.bn.mode)

    @property
    def total_steps(self) -> int:
        return self.cfg.trainer.steps + self.cfg.trainer.qn_steps

    # -- the run ------------------------------------------------------------------------------
    def fit(self) -> Dict[str, object]:
        """Run Adam then the quasi-Newton stage from the current step; evaluate, checkpoint and
        return the final metrics. ``metrics["status"]`` is ``completed`` (also when training
        ended early: time budget, a line search that cannot progress; see ``stopped_early``),
        ``interrupted`` (a signal set :attr:`stop_requested`; a checkpoint was written),
        ``pruned`` (a search's pruner stopped the trial at an evaluation; a checkpoint was
        written; the errors are those of that evaluation) or ``diverged``."""
        self.clock.start()
        if self.step == 0:
            self.save()  # a run killed at any moment after this can be resumed
        else:
            self.guard.keep(self.training_state)
        self.clock.start_loop()
        while self.step < self.total_steps and self.stop_reason is None:
            self.clock.tick()
            # Several ranks decide together (their clocks differ): see Ranks.agree.
            over = self.ranks.over_budget if self.ranks.group is not None else self.clock.spent()
            if over:
                self.stop_reason = self.clock.budget_message()
                self.event_log.add(self.step, self.stop_reason)
                break
            try:
                outcome = self._iteration()
            except Exception as e:  # noqa: BLE001 - only a failed collective is handled
                if not distributed.is_communication_error(e):
                    raise
                return self._rank_lost(e)
            if outcome is not None:
                return outcome
        self.clock.tick()
        outcome = self._settle()  # the budget may end the loop between boundaries
        if isinstance(outcome, dict):
            return outcome
        if self.bn.calibrates_at_end():
            self.calibrate("end of training")
        if self.probe is not None:
            self.divergence()
        errors = self.evaluate()
        self.save()
        return self._metrics("completed", errors)

    def _iteration(self) -> Optional[Dict[str, object]]:
        """One step of the loop (with its redraw, freeze, logging, evaluation, checkpoint);
        returns the run's metrics when the run ends here, else None."""
        self.ranks.before_step(self.step, self.model, self.points)
        stage = "adam" if self.step < self.cfg.trainer.steps else choice(self.cfg.optim.qn)
        self.clock.open_window(self.step, restart=stage != self.stage)
        self.stage = stage
        reason = self.bn.freeze_reason(self.step, stage)
        if reason is not None:
            self.freeze(reason)
        if self.points.redraw_due(self.step):
            self.resample()
        kind = "adam" if stage == "adam" else "qn"
        terms = self.clock.timed_step(kind, self.adam_step if kind == "adam" else self.qn_step)
        self.guard.track(self.step, terms, self.model.parameters())
        if self._boundary(self.step + 1):
            outcome = self._settle()
            if outcome is not None:
                return None if outcome is True else outcome
        self._after_step(terms)
        if self.ranks.group is not None and not self._agreement_step(self.step):
            return None  # several ranks act on a stop only where they have agreed on it
        if self.stop_requested:
            self.save()
            metrics = self._metrics("interrupted", message=(
                f"{self.stop_requested} received: stopped at step {self.step}, checkpoint "
                f"written to {self.paths.last_checkpoint}"))
            metrics["stopped_by"] = self.stop_requested
            return metrics
        if self.prune_reason:
            self.save()
            self.event_log.add(self.step, self.prune_reason)
            return self._metrics("pruned", self.last_errors, message=(
                f"{self.prune_reason}; checkpoint written to {self.paths.last_checkpoint}"))
        return None

    def _boundary(self, n: int) -> bool:
        """Whether the loop reads from the device after step ``n`` (counted from 1): where it
        logs, evaluates, measures, checkpoints, redraws, changes stage or stops, and in the
        quasi-Newton stage (whose line searches read anyway). Between boundaries an Adam step
        reads nothing (see :class:`pinn.training.rollback.RollbackGuard`)."""
        tc, every = self.cfg.trainer, lambda k: bool(k) and n % k == 0
        return (self.stage != "adam" or n >= tc.steps or n >= self.total_steps
                or self.stop_requested is not None or every(tc.log_every)
                or every(tc.eval_every) or every(tc.checkpoint_every)
                or self.points.redraw_due(n)
                or self.bn.freeze_reason(n, "adam") is not None
                or (self.probe is not None and every(self.cfg.log.divergence_every)))

    def _agreement_step(self, n: int) -> bool:
        """Where several ranks agree on a stop (a signal, a pruned trial, the budget): after
        each logging and evaluation step and the last one, the same steps on every rank (one
        small all-reduce, read back)."""
        tc = self.cfg.trainer
        return n % tc.log_every == 0 or n % tc.eval_every == 0 or n >= self.total_steps

    def _settle(self):
        """Read the guard at a boundary: None when every step since the last one was finite;
        True when a non-finite one was rolled back (training goes on); the run's metrics when
        it stops there."""
        bad = self.guard.settle()
        if bad is None:
            return None
        message = self._recover(bad)
        return True if message is None else self._metrics("diverged", message=message)

    def _after_step(self, terms: Dict[str, object]) -> None:
        self.step += 1
        tc = self.cfg.trainer
        self.last_terms = terms
        if self.step % tc.log_every == 0 or self.step == self.total_steps:
            terms = self.last_terms = as_floats(terms)
            # The rate of this logging window (optimizer steps only, compilation excluded),
            # one curve per stage; metrics.json keeps the whole-run average.
            kind = "adam" if self.stage == "adam" else "qn"
            rate = self.clock.window_rate(self.step)
            if self.learned is not None:  # the coefficients an inverse run is for
                self.logger.scalars({f"params/{k}": v
                                     for k, v in self.learned.as_floats().items()}, self.step)
            self.logger.scalars({**{f"loss/{k}": v for k, v in terms.items()},
                                 **self.points.scalars(), **self.optimizers.scalars(self.stage),
                                 f"speed/{kind}_steps_per_s": rate}, self.step)
            self.logger.progress(self.step, terms["total"], rate, self.stage,
                                 budget_left=self.clock.budget_left())
        if self.step % tc.eval_every == 0 and self.step != self.total_steps:
            errors = self.evaluate()
            if self.monitor is not None:
                values = {**{f"error/{k}": v for k, v in errors.items()},
                          **{f"loss/{k}": v for k, v in as_floats(terms).items()}}
                self.prune_reason = self.monitor(self.step, values)
        if self.probe is not None and self.step % self.cfg.log.divergence_every == 0:
            self.divergence()
        if self.step % tc.checkpoint_every == 0:
            self.save()
        if self.ranks.group is not None and self._agreement_step(self.step):
            self.stop_requested, self.prune_reason = self.ranks.agree(
                self.stop_requested, self.prune_reason, self.clock.over_budget_now(),
                self.global_batch.interior)

    # -- one step -----------------------------------------------------------------------------
    def _loss(self):
        terms = self.points.terms(self.step)
        total = self.guard.inject(self.step, weighted_total(terms, self.weights))
        return total, terms

    def _normal_equations(self):
        """A = J'J, g = J'R and R'R of this rank's loss (optim.qn=lm)."""
        attention = self.points.loss_attention
        rows = blocks(self.model, self.pde, self.batch, self.weights, data=self.data,
                      shares=self.points.shares,
                      attention=None if attention is None else attention.lam)
        return normal_equations(self.model, rows)

    def _gradient(self):
        """The loss and its gradient in ``.grad``: replayed from a CUDA graph where captured."""
        if self.captured is not None:
            return self.captured()
        return evaluate_eagerly(self._loss, self.model.parameters())

    def _capture_key(self):
        """What a captured evaluation depends on besides the parameters and points."""
        return tuple(sorted(self.weights.items())), self.engine(self.step)

    def adam_step(self) -> Dict[str, object]:
        """One Adam step on the current batch; returns the loss terms before the update."""
        self.model.train()
        return self.optimizers.adam_step(self._gradient, self.ranks)

    def qn_step(self) -> Dict[str, float]:
        """One quasi-Newton iteration (``optim.qn``) on the current batch."""
        if self.optimizers.qn is None:
            self.optimizers.start_qn(self.step)
            self.points.hold_causal()  # one objective per line search: weights held
        self.model.train()
        terms, stop = self.optimizers.qn_step(self.step, self._loss, self.ranks,
                                              system=self._normal_equations,
                                              gradient=self._gradient)
        if stop is not None:
            self.stop_reason = stop
        return terms

    # -- what changes the objective -----------------------------------------------------------
    def calibrate(self, reason: str) -> None:
        """Exact BN population statistics of the current interior points, in one pass."""
        self.bn.calibrate(self.batch.interior, self.step, reason)
        self.optimizers.new_objective()  # same parameters, different function

    def freeze(self, reason: str) -> None:
        """Calibrate, then train on with the calibrated statistics as constants."""
        if self.bn.freeze(self.batch.interior, self.step, reason):
            self.optimizers.new_objective()

    def resample(self) -> None:
        """New collocation points (RAD when configured); the quasi-Newton curvature is kept."""
        with self.clock.counting("resample"):
            self.points.redraw(self.step)
            self.optimizers.new_points(self.step)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, with_figure: bool = True) -> Dict[str, float]:
        """Errors of the predict-mode network against the reference; logged at ``self.step``.
        On several ranks, rank 0 alone evaluates (the others return nothing)."""
        if not distributed.is_writer():
            return {}
        pred = predict_grid(self.model, self.grid)
        # At a reference file's nodes where the problem has one, else on the grid.
        errors = node_errors(self.model, self.pde) or grid_errors(pred, self.grid, self.pde)
        self.quantities = quantity_values(self.model, self.pde)  # drag, lift, ... if any
        write_profiles(profiles(self.model, self.pde), self.paths.root / "profiles", self.pde)
        errors.update(quantity_errors(self.quantities, self.pde))
        self.logger.scalars({f"error/{k}": v for k, v in errors.items()}, self.step)
        self.logger.scalars({f"quantity/{k}": v for k, v in self.quantities.items()}, self.step)
        if (with_figure and self.cfg.log.figures and self.logger.writer is not None
                and not self.figures_failed):
            try:
                self._figures(pred)
            except Exception as e:  # a picture never costs the run: say so once, go on
                self.figures_failed = True
                self.event_log.add(self.step, f"figures stopped (the run goes on): "
                                              f"{type(e).__name__}: {e}")
        self.last_errors = errors
        return errors

    def _figures(self, pred) -> None:
        for tag, fig in output_figures(self.grid, pred, self.pde.outputs, self.cfg.pde.name,
                                       self.step, self.paths.root.name):
            self.logger.figure(tag, fig, self.step)
        attention = self.points.attention
        if attention is not None and attention.lam is not None:
            self.logger.figure("attention/multipliers", attention_figure(
                self.batch.interior.detach().cpu().numpy(), attention.lam.cpu().numpy(),
                self.pde.axes.names), self.step)

    def divergence(self) -> Dict[str, float]:
        """Forward-vs-predict divergence on the probe set, logged under ``divergence/``. On
        several ranks, rank 0 alone measures it, on the global batch (the single-process
        quantities)."""
        if not distributed.is_writer():
            return {}
        with self.clock.counting("divergence"):
            values = self.probe.measure(self.model, self.pde, self.global_batch, self.weights,
                                        self.points.global_data)
        self.logger.scalars({f"divergence/{k}": v for k, v in values.items()}, self.step)
        return values

    # -- state --------------------------------------------------------------------------------
    def training_state(self) -> Dict[str, object]:
        """Everything the loop needs to continue exactly from here (tensors, numbers, strings,
        lists and dicts only, so that a checkpoint loads with ``weights_only=True``): the
        union of the parts' state dicts."""
        return {"model": self.model.state_dict(), **self.optimizers.state_dict(),
                **self.points.state_dict(), "step": self.step, "stage": self.stage,
                **self.bn.state_dict(), **self.event_log.state_dict(),
                **self.clock.state_dict(), "last_terms": as_floats(self.last_terms),
                **self.guard.state_dict(), **self.engine.state_dict()}

    def load_training_state(self, state: Dict[str, object]) -> None:
        """Continue from :meth:`training_state` (a checkpoint's or an in-memory snapshot).
        Checkpoints hold CPU tensors (pinn.device.to_cpu): the model and optimizers copy their
        state onto their parameters' device, the points come back to the run's."""
        self.model.load_state_dict(state["model"])
        self.bn.load_state_dict(state)
        note = self.optimizers.load_state_dict(state)
        self.points.load_state_dict(state)
        self.step, self.stage = int(state["step"]), str(state["stage"])
        self.event_log.load_state_dict(state)
        if note:
            self.event_log.add(self.step, note)
        self.clock.load_state_dict(state, self.step)
        self.last_terms = dict(state["last_terms"])
        self.guard.load_state_dict(state)
        self.engine.load_state_dict(state)

    def save(self) -> None:
        """Write checkpoints/last.pt atomically; the previous one stays until this one is whole.
        Several ranks hold the same state: rank 0 writes it."""
        if distributed.is_writer():
            self._write_checkpoint()
        self.guard.keep(self.training_state)

    def _write_checkpoint(self) -> None:
        save_checkpoint(
            Checkpoint(model=self.model.state_dict(), step=self.step, stage=self.stage,
                       config_yaml=OmegaConf.to_yaml(self.cfg, resolve=True),
                       extra={"bn_mode": self.bn_mode, "training": self.training_state()}),
            self.paths.last_checkpoint)

    # -- faults -------------------------------------------------------------------------------
    def _recover(self, bad_step: int) -> Optional[str]:
        """Handle a non-finite loss or gradient at ``bad_step``; returns a stop message, or None
        when training goes on from the last good state with a lower learning rate."""
        self.optimizers.qn = None  # its state is replaced: free it before the copy
        self.load_training_state(self.guard.good_state())
        why = self.guard.recover(bad_step, self.step)
        if why is None:
            return None
        self.save()
        return (f"non-finite loss or gradient at step {bad_step}; stopped ({why}). The checkpoint "
                f"holds the last finite state, step {self.step}: {self.paths.last_checkpoint}")

    def _rank_lost(self, error: BaseException) -> Dict[str, object]:
        """A collective failed (a rank died, or did not answer within distributed.timeout_s):
        roll back to the last completed step, let the lowest surviving rank write its
        checkpoint, and end the run with status ``failed`` and one line naming the rank."""
        lost, what = self.ranks.lost(error, self.step, self.model, self.points)
        if self.guard.settle() is not None:  # a non-finite step since the last boundary
            self.optimizers.qn = None
            self.load_training_state(self.guard.good_state())
        if distributed.is_writer():
            self._write_checkpoint()
        message = f"{what}; the checkpoint of step {self.step} is {self.paths.last_checkpoint}"
        self.event_log.add(self.step, message)
        metrics = self._metrics("failed", message=message)
        metrics["lost_ranks"] = lost
        return metrics

    def _metrics(self, status: str, errors: Optional[Dict[str, float]] = None,
                 message: Optional[str] = None) -> Dict[str, object]:
        tc = self.cfg.trainer
        metrics: Dict[str, object] = {
            "status": status,
            "steps": self.step,  # done; the asked ones below
            "steps_asked": self.total_steps,
            "adam_steps": int(tc.steps),
            "qn_steps": int(tc.qn_steps),
            "qn_method": choice(self.cfg.optim.qn),
            **self.clock.metrics(self.step),
            "reference": self.pde.reference_kind,
            "rollbacks": self.guard.rollbacks,
            "derivatives_engine": self.engine.name,
            **device_info(self.device),
            **self.ranks.metrics(),
        }
        if self.cfg.derivatives.compile and self.engine.name == "taylor":
            metrics.update(self.clock.compile_metrics())
        metrics.update(self.optimizers.metrics(self.step, int(tc.steps)))
        if message:
            metrics["message"] = message
        if self.stop_reason:
            metrics["stopped_early"] = self.stop_reason
        metrics.update({f"loss/{k}": v for k, v in as_floats(self.last_terms).items()})
        if self.learned is not None:
            metrics.update({f"params/{k}": v for k, v in self.learned.as_floats().items()})
            metrics.update({f"params/{k}/rel_error": v
                            for k, v in self.learned.errors().items()})
        if self.data is not None:
            metrics["data_points"] = len(self.data)
        metrics.update({f"error/{k}": v for k, v in (errors or {}).items()})
        metrics.update({f"quantity/{k}": v for k, v in self.quantities.items()})
        if self.bn.has_bn:
            metrics["bn_mode"] = self.bn_mode
            metrics["divergence_time_s"] = self.clock.divergence_seconds
            last = {} if self.probe is None else self.probe.last
            metrics.update({f"divergence/{k}": v for k, v in last.items()})
        if self.event_log.items:
            metrics["events"] = self.events
        return metrics
