"""The points the loss is evaluated on, and how its terms are weighted.

:class:`PointSets` owns the sampler and its draws (redrawn every ``sampler.resample_every``
steps, by RAD where configured), this rank's slice of them on one rank of several, the fixed
observations of the data term, the loss weights (balanced to equal gradient norms at each
redraw with ``loss.balance=grad_norm``) and the causal weighting in time. Its state is the
checkpoint's ``sampler``, ``batch``, ``weights`` and ``causal`` keys.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from pinn import distributed
from pinn.config import choice
from pinn.attention import ResidualAttention
from pinn.data import Observations
from pinn.distributed import Group
from pinn.causal import CausalWeighting
from pinn.losses import grad_norm_weights, loss_terms, residual_magnitude
from pinn.misfits import boundary_values_per_pair, piece_values_per_point
from pinn.nn.norm import running_statistics_fixed
from pinn.pdes.problem import PDE
from pinn.sampling import Batch, Sampler


def initial_weights(weights, pde: PDE) -> Dict[str, float]:
    """``loss.weights`` for ``pde``: no ``ic`` for a steady problem; for a system, a
    ``res_<equation>`` weight per equation (``res`` where it has none of its own)."""
    out = {k: float(v) for k, v in weights.items()}
    if not pde.axes.time:  # a steady problem has no initial condition
        out.pop("ic", None)
    if pde.equations:  # loss.weights.res scales every equation without a weight of its own
        res = out.pop("res", 1.0)
        for name in pde.equations:
            out.setdefault(f"res_{name}", res)
    return out


class PointSets:
    """Training points, observations and loss weights of a run.

    Args:
        cfg: the run config (``sampler``, ``loss``, ``derivatives``, ``seed``).
        model, pde: the network and the problem (residuals for RAD, gradients for balancing).
        engine: the engine choice (:class:`pinn.training.engines.EngineChoice`): step -> name.
        group: this rank's place in a run of several, or None.
        data: observations for the data term, or None.

    Attributes:
        global_batch: the current draw; ``batch``: this rank's slice of it (the draw itself
            on one process), ``shares``: each term's share of its set that the slice holds.
        global_data, data: the observations, all of them and this rank's slice.
        weights: loss weight per term; causal: the causal weighting, or None.
    """

    def __init__(self, cfg: DictConfig, model: nn.Module, pde: PDE,
                 engine: Callable[[int], str], group: Optional[Group],
                 data: Optional[Observations], dtype: torch.dtype, device: torch.device):
        self.model, self.pde, self.engine, self.group = model, pde, engine, group
        self.device = device
        self.compile = bool(cfg.derivatives.compile)
        s, lc = cfg.sampler, cfg.loss
        self.resample_every, self.n_interior = s.resample_every, s.n_interior
        self.adaptive = choice(s.adaptive) == "rad"
        self.balance, self.balance_momentum = choice(lc.balance), float(lc.balance_momentum)
        # Observations are fixed for the whole run (never redrawn), on the run's device; on
        # one rank of several, this rank's slice of them (global_data: all of them).
        self.global_data = None if data is None else data.to(dtype, device)
        self.data, self.data_share = self.global_data, 1.0
        if group is not None and data is not None:
            self.data, self.data_share = distributed.shard_observations(self.global_data, group)
        rad = (s.rad_k, s.rad_c, s.rad_oversample) if self.adaptive else None
        self.sampler = Sampler(choice(s.kind), s.n_interior, s.n_initial, s.n_boundary,
                               pde.domain, dtype, torch.Generator().manual_seed(cfg.seed),
                               rad=rad, device=device)
        self.global_batch = self.batch = self.sampler.sample()
        self.shares: Optional[Dict[str, float]] = None
        self.set_batch(self.global_batch)
        self.weights = initial_weights(lc.weights, pde)
        self.causal = (CausalWeighting(lc.causal_eps, lc.causal_chunks, *pde.domain.time)
                       if lc.causal else None)
        if self.causal is not None and group is not None:
            self.causal.reduce = distributed.all_sum
        kind = choice(lc.attention)
        self.attention = (None if kind == "none" else
                          ResidualAttention(kind, lc.attention_gamma, lc.attention_eta,
                                            lc.attention_lambda0, choice(lc.attention_qn)))
        self.qn_from = cfg.trainer.steps  # the first step of the quasi-Newton stage
        if self.attention is not None and group is not None:
            raise ValueError(f"loss.attention={kind} is not supported under torchrun (the "
                             "multipliers belong to the global points); use one process or "
                             "loss.attention=none")

    def set_batch(self, batch: Batch) -> None:
        """Train on ``batch`` from now on: on one rank of several, on this rank's slice of it,
        each loss term weighted by the share of its set the slice holds."""
        self.global_batch = batch
        if self.group is None:
            self.batch, self.shares = batch, None
            return
        self.batch, self.shares = distributed.shard_batch(
            batch, self.group, boundary_values_per_pair(self.pde),
            lambda j, p: piece_values_per_point(self.pde, j, p, getattr(
                getattr(self.model, "output_transform", None), "imposes_dirichlet", False)))
        self.shares["data"] = self.data_share

    def use_batch(self, batch: Batch) -> None:
        """Evaluate on ``batch`` (the same points in other memory: a CUDA graph's buffers,
        :mod:`pinn.training.capture`); one process only."""
        self.batch = batch

    def terms(self, step: int) -> Dict[str, torch.Tensor]:
        """The loss terms of the network on this rank's points (:func:`pinn.losses.loss_terms`)."""
        return loss_terms(self.model, self.pde, self.batch, engine=self.engine(step),
                          compile=self.compile, causal=self.causal, data=self.data,
                          shares=self.shares, attention=self.loss_attention)

    @property
    def loss_attention(self) -> Optional[ResidualAttention]:
        """The attention that weights the residual now: None without attention, and while
        attention chooses the points instead (``loss.attention_qn=sampling``)."""
        a = self.attention
        return a if a is not None and a.in_loss else None

    # -- redraws and balancing --------------------------------------------------------------
    def redraw_due(self, step: int) -> bool:
        every = self.resample_every
        return bool(every) and step > 0 and step % every == 0

    def redraw(self, step: int) -> None:
        """New points (RAD when configured); the causal weights are fixed again from them, and
        the loss weights rebalanced (``loss.balance=grad_norm``)."""
        # Every rank draws the same global set; RAD's candidate residuals are computed a slice
        # per rank and gathered, so every rank selects the same points.
        residual = (lambda p: distributed.sharded_map(lambda q: self._residual(q, step), p))
        a = self.attention
        if a is not None and a.qn_mode == "sampling" and step >= self.qn_from:
            # Quasi-Newton stage: attention chooses the points among RAD's candidates.
            self.set_batch(self.sampler.sample(residual, weigh=a.draw_weights))
            a.drawn(self.sampler.last_weights.to(self.global_batch.interior))
        else:
            self.set_batch(self.sampler.sample(residual if self.adaptive else None))
            if a is not None:
                a.new_points()
        if self.causal is not None:
            self.causal.release()
        if self.balance == "grad_norm":
            self.rebalance(step)

    def _residual(self, points: torch.Tensor, step: int) -> torch.Tensor:
        """|r| at candidate points (M, d), by the predict-mode network (no statistics
        change)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return residual_magnitude(self.model, self.pde, points, engine=self.engine(step),
                                      compile=self.compile, chunk=max(self.n_interior, 1))
        finally:
            self.model.train(was_training)

    def rebalance(self, step: int) -> None:
        """Move the loss weights towards equal gradient norms on the current batch."""
        m = self.balance_momentum
        self.model.train()
        with running_statistics_fixed(self.model):
            terms = self.terms(step)
            reduce = None if self.group is None else distributed.all_sum
            new = grad_norm_weights(self.model, terms, reduce=reduce)
        keys = list(new) + [k for k in self.weights if k not in new]
        self.weights = {k: m * self.weights.get(k, 1.0) + (1 - m) * new.get(k, 1.0) for k in keys}

    def hold_causal(self) -> None:
        """One objective per line search: the causal weights and the attention multipliers
        held until the next redraw."""
        if self.causal is not None:
            self.causal.hold()
        if self.attention is not None:
            self.attention.hold()

    def scalars(self) -> Dict[str, float]:
        """The logged weights: ``weight/<term>`` and the smallest causal slice weight (1 once
        every slice of time is resolved)."""
        values = {f"weight/{k}": w for k, w in self.weights.items()}
        if self.causal is not None and self.causal.last is not None:
            values["causal/min_weight"] = float(self.causal.last.min())
        if self.attention is not None:
            values.update(self.attention.scalars())
        return values

    # -- state ------------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, object]:
        """What a step may change here, cheaply (the batch by reference: draws replace it)."""
        return {"sampler": self.sampler.state_dict(), "batch": self.global_batch,
                "weights": dict(self.weights),
                "attention": None if self.attention is None else self.attention.state_dict()}

    def restore(self, snap: Dict[str, object]) -> None:
        self.sampler.load_state_dict(snap["sampler"])
        self.set_batch(snap["batch"])
        self.weights = snap["weights"]
        if self.attention is not None:
            self.attention.load_state_dict(snap["attention"], self.global_batch.interior)

    def state_dict(self) -> Dict[str, object]:
        state = {"sampler": self.sampler.state_dict(),
                 "batch": self.global_batch.state_dict(),
                 "weights": dict(self.weights),
                 "causal": None if self.causal is None else self.causal.state_dict()}
        if self.attention is not None:  # (a run without attention keeps the earlier keys)
            state["attention"] = self.attention.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        # A checkpoint holds CPU tensors (pinn.device.to_cpu): the batch comes back to the
        # run's device. The global batch: a checkpoint of N ranks resumes on M.
        self.set_batch(Batch.from_state(state["batch"], self.device))
        self.weights = dict(state.get("weights", self.weights))
        if self.causal is not None and state.get("causal") is not None:
            self.causal.load_state_dict(state["causal"], self.batch.interior)
        if self.attention is not None and state.get("attention") is not None:
            self.attention.load_state_dict(state["attention"], self.batch.interior)
