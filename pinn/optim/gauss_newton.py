"""Levenberg-Marquardt on the stacked residual vector (``optim.qn=lm``).

The loss is L = ||R||^2 (:mod:`pinn.residual_vector`). Each iteration forms the normal
equations A = J'J, g = J'R at the current parameters and solves the damped system

    (A + mu I) h = -g                                   (Cholesky factorization)

for the step h; the step is taken when the loss falls, and the damping mu follows the gain
ratio rho = (L(x) - L(x + h)) / (h'(mu h - g)) (actual over predicted decrease of L; the
linear model's decrease is h'(mu h - g) for L = ||R||^2) by the rule of Nielsen (1999), as in
Madsen, Nielsen & Tingleff, "Methods for non-linear least squares problems" (2nd ed., 2004),
Algorithm 3.16 and eq. (3.14):

    start:     mu = tau * max_i A_ii,  nu = 2
    rho > 0:   x <- x + h,  mu <- mu * max(1/3, 1 - (2 rho - 1)^3),  nu <- 2
    otherwise: mu <- mu * nu,  nu <- 2 nu  (and solve again, up to ``max_tries`` times)

Small mu is a Gauss-Newton step, large mu a short gradient step. One :meth:`LevenbergMarquardt.step`
is one accepted step (or ``max_tries`` rejected ones, after which the stage has stalled: no
step that lowers the loss is left at this damping, and training stops). Its cost: one Jacobian
(about one reverse pass per chunk of rows), one n x n product J'J, and per try a Cholesky
factorization and one loss evaluation.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

# Gauss-Newton normal equations at the current parameters: () -> (A, g, R'R).
System = Callable[[], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
# The loss and its terms at the current parameters (no gradient): () -> {"total": .., term: ..}.
Loss = Callable[[], Dict[str, float]]


def damped_step(A: torch.Tensor, g: torch.Tensor, mu: float) -> Optional[torch.Tensor]:
    """h solving (A + mu I) h = -g by Cholesky, or None when the damped matrix is not
    positive definite in floating point."""
    M = A.clone()
    M.diagonal().add_(mu)
    L, info = torch.linalg.cholesky_ex(M)
    if int(info) != 0:
        return None
    return torch.cholesky_solve(-g[:, None], L)[:, 0]


def gain_ratio(before: float, after: float, h: torch.Tensor, g: torch.Tensor,
               mu: float) -> float:
    """rho = (L(x) - L(x + h)) / (h'(mu h - g)); -inf for a non-finite loss after the step."""
    if not math.isfinite(after):
        return -math.inf
    predicted = float(torch.dot(h, mu * h - g))
    return (before - after) / predicted if predicted > 0 else -math.inf


def next_damping(mu: float, nu: float, rho: float) -> Tuple[float, float]:
    """(mu, nu) after a try with gain ratio ``rho`` (Nielsen's rule, see the module doc)."""
    if rho > 0:
        return mu * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), 2.0
    return mu * nu, 2.0 * nu


class LevenbergMarquardt:
    """Levenberg-Marquardt over a flat view of ``params``.

    Args:
        params: the trainable parameters (the order of the Jacobian's columns).
        tau: the first damping, relative to the largest diagonal entry of J'J.
        max_tries: damped solves one step may try before the stage stalls.
    """

    name = "lm"

    def __init__(self, params, tau: float = 1e-3, max_tries: int = 30):
        self.params = [p for p in params if p.requires_grad]
        self.tau, self.max_tries = float(tau), int(max_tries)
        self.mu: Optional[float] = None
        self.nu = 2.0
        self.evaluations = 0  # loss evaluations
        self.jacobians = 0
        self._terms: Optional[Dict[str, float]] = None  # at the current point
        self.last: Dict[str, object] = {}
        self.param_groups = [{"params": self.params}]  # read by rollbacks (no learning rate)

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def _set(self, x: torch.Tensor) -> None:
        i = 0
        for p in self.params:
            n = p.numel()
            p.copy_(x[i:i + n].view_as(p))
            i += n

    def invalidate(self) -> None:
        """The objective changed (new points): the loss at the current point is unknown."""
        self._terms = None

    def _loss(self, loss: Loss) -> Dict[str, float]:
        self.evaluations += 1
        with torch.no_grad():
            return loss()

    def step(self, system: System, loss: Loss) -> Dict[str, float]:
        """One accepted step (see the module doc); returns the loss terms at the point reached
        (at the unchanged point when every try failed: ``last["stalled"]`` says so)."""
        self.last = {}
        if self._terms is None:
            self._terms = self._loss(loss)
        before = self._terms["total"]
        A, g, _ = system()
        self.jacobians += 1
        if self.mu is None:
            self.mu = self.tau * float(A.diagonal().max())
        x = self._flat()
        for tries in range(1, self.max_tries + 1):
            h = damped_step(A, g, self.mu)
            if h is None:
                self.mu, self.nu = next_damping(self.mu, self.nu, -math.inf)
                continue
            self._set(x + h)
            terms = self._loss(loss)
            rho = gain_ratio(before, terms["total"], h, g, self.mu)
            mu = self.mu
            self.mu, self.nu = next_damping(self.mu, self.nu, rho)
            if rho > 0:
                self._terms = terms
                self.last = {"mu": mu, "rho": rho, "tries": tries,
                             "step": float(torch.linalg.vector_norm(h))}
                return terms
        self._set(x)
        self.last = {"mu": self.mu, "tries": self.max_tries,
                     "stalled": (f"Levenberg-Marquardt: {self.max_tries} damped steps in a row "
                                 f"did not lower the loss (damping now {self.mu:.3e})")}
        return self._terms

    def state_dict(self) -> dict:
        return {"method": "lm", "mu": self.mu, "nu": self.nu, "evaluations": self.evaluations,
                "jacobians": self.jacobians, "terms": self._terms}

    def load_state_dict(self, state: dict) -> None:
        self.mu = None if state["mu"] is None else float(state["mu"])
        self.nu = float(state["nu"])
        self.evaluations, self.jacobians = int(state["evaluations"]), int(state["jacobians"])
        self._terms = state["terms"]


def lm_config_error(cfg) -> Optional[str]:
    """Why the run ``cfg`` cannot take ``optim.qn=lm`` (one line), or None.

    Per-point Jacobians need per-point residuals: batch normalization must hold constant
    statistics by the time the stage starts (``bn.mode=frozen``, or ``bn.freeze_at`` at or
    before the end of Adam); causal weighting couples the points through its slice weights."""
    if str(getattr(cfg.model.norm, "value", cfg.model.norm)) == "batch":
        mode = str(getattr(cfg.bn.mode, "value", cfg.bn.mode))
        freeze = cfg.bn.freeze_at
        if mode != "frozen" and (freeze is None or freeze > cfg.trainer.steps):
            return (f"optim.qn=lm with bn.mode={mode}: the residual of one point depends on the "
                    "batch's statistics, so its Jacobian is not per point; use bn.mode=frozen "
                    f"or bn.freeze_at <= trainer.steps={cfg.trainer.steps}")
    if cfg.loss.get("causal"):
        return ("optim.qn=lm with loss.causal=true: the causal slice weights couple the points "
                "and are not supported by the Levenberg-Marquardt stage; set loss.causal=false "
                "or choose another optim.qn")
    return None


__all__ = ["LevenbergMarquardt", "damped_step", "gain_ratio", "next_damping", "lm_config_error"]
