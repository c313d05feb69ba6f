"""Residual-based attention: a multiplier per interior point, grown where the residual is large.

RBA (Anagnostopoulos, Toscano, Stergiopulos & Karniadakis, "Residual-based attention in
physics-informed neural networks", CMAME 421, 116805, 2024) keeps a multiplier lambda_i per
collocation point and updates it from the residual at every optimizer step,

    lambda_i <- gamma * lambda_i + eta * q_i / max_j q_j,        q_i = |r_i|,

bounded by eta / (1 - gamma); the residual term is mean_i (lambda_i r_i)^2 (the authors'
code squares the multiplier: ``torch.mean((self.rsum * self.r_pred) ** 2)``). vRBA (Toscano,
Chen, Oommen & Karniadakis, "A variational framework for residual-based adaptivity in neural
PDE solvers and operator learning", arXiv 2509.14198, 2025) derives q from a convex potential
Phi as q ~ Phi'(|r| / eps) (their eq. 12); for the exponential potential, which targets the
uniform (L-infinity) error, q_i ~ exp(|r_i| / eps_k) with the annealed temperature
eps_k = max_j |r_j| / log(k + 2) at update k, so that

    q_i / max_j q_j = (k + 2) ** (|r_i| / max_j |r_j| - 1)

(the authors' ``update_vRBA``; their quadratic potential gives q = |r|, which is RBA).

In pinn, ``loss.attention=rba`` uses q = |r| and ``vrba`` the exponential potential; with a
system's several equations, |r| is the Euclidean norm over them at the point.

- Adam: the multipliers are updated from each step's own residuals before the loss is formed
  (as the authors' code does), starting from ``lambda0``.
- Quasi-Newton, ``loss.attention_qn=sampling`` (the default; the vRBA authors' scheme): the
  residual term is unweighted, and attention chooses the points instead. At each redraw the
  interior points are drawn among RAD's candidates with probability proportional to
  q_i / max_j q_j at the candidate's residual, the vRBA temperature counting the quasi-Newton
  redraws from 0 (the authors' SSBroyden loop restarts its count). The authors keep a fixed
  pool with multipliers smoothed over redraws (gamma = 0.1) and draw with replacement; pinn's
  candidates are fresh at every redraw and drawn without replacement, so a candidate's weight
  is the update's fixed point, which that smoothing nearly reaches (0.9 of it after one
  update). The chosen points' multipliers (eta / (1 - gamma) times their weight) are logged.
- Quasi-Newton, ``loss.attention_qn=weights``: the multipliers weight the residual as in Adam,
  held fixed between redraws (one objective per line search).
- Redraws in the Adam stage: new points have no history. Each new point starts at the update's
  fixed point for its own residual, lambda_i = eta / (1 - gamma) * q_i / max_j q_j (what the
  update converges to while the residuals stay as they are).
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch

KINDS = ("none", "rba", "vrba")
QN_MODES = ("sampling", "weights")


class ResidualAttention:
    """Multipliers of the interior points (:attr:`lam`, (N,)) and their update.

    Args:
        kind: ``rba`` (q = |r|) or ``vrba`` (the exponential potential).
        gamma, eta: the update's memory and step; the multipliers stay within
            [0, eta / (1 - gamma)].
        lambda0: the multipliers before the first update.
        qn_mode: ``sampling`` or ``weights``: what attention does in the quasi-Newton stage
            (module doc).
    """

    def __init__(self, kind: str, gamma: float, eta: float, lambda0: float,
                 qn_mode: str = "weights"):
        if kind not in ("rba", "vrba"):
            raise ValueError(f"loss.attention={kind!r} is not allowed: one of {', '.join(KINDS)}")
        if qn_mode not in QN_MODES:
            raise ValueError(f"loss.attention_qn={qn_mode!r} is not allowed: one of "
                             f"{', '.join(QN_MODES)}")
        self.kind, self.gamma, self.eta, self.lambda0 = kind, float(gamma), float(eta), float(lambda0)
        self.qn_mode = qn_mode
        self.lam: Optional[torch.Tensor] = None  # (N,), set by the first update or redraw
        self.updates = 0  # k of the vRBA temperature
        self.draws = 0  # quasi-Newton redraws by attention: k of their temperature
        self.held = False

    @property
    def bound(self) -> float:
        return self.eta / (1.0 - self.gamma)

    def normalized(self, r_abs: torch.Tensor, count: Optional[int] = None) -> torch.Tensor:
        """q_i / max_j q_j in [0, 1] for |r| (N,), at the current update count or at
        ``count`` (the vRBA temperature's k; module doc)."""
        r = r_abs.detach()
        top = r.max()
        if not bool(top > 0):
            return torch.ones_like(r)
        if self.kind == "rba":
            return r / top
        k = self.updates if count is None else count
        return torch.exp((r / top - 1.0) * math.log(k + 2.0))

    @property
    def samples(self) -> bool:
        """Whether attention now chooses the points (quasi-Newton stage, ``sampling``)."""
        return self.held and self.qn_mode == "sampling"

    @property
    def in_loss(self) -> bool:
        """Whether the multipliers weight the residual now (not while attention samples)."""
        return not self.samples

    def draw_weights(self, r_abs: torch.Tensor) -> torch.Tensor:
        """Selection weights q_i / max_j q_j (M,) of a redraw's candidates with residual
        magnitudes ``r_abs`` (M,), at the temperature of the next quasi-Newton draw."""
        weights = self.normalized(r_abs, count=self.draws)
        self.draws += 1
        return weights

    def drawn(self, weights: Optional[torch.Tensor]) -> None:
        """The chosen points' selection weights (N,): their multipliers become the update's
        fixed point for them (logged; the loss does not use them while attention samples)."""
        self.lam = None if weights is None else self.bound * weights

    def update(self, r_abs: torch.Tensor) -> torch.Tensor:
        """One update from the residual magnitudes |r| (N,) of the current points; returns the
        new multipliers (no gradient)."""
        if self.lam is None:
            self.lam = torch.full_like(r_abs.detach(), self.lambda0)
        self.lam = self.gamma * self.lam + self.eta * self.normalized(r_abs)
        self.updates += 1
        return self.lam

    def start(self, r_abs: torch.Tensor) -> torch.Tensor:
        """Multipliers of freshly drawn points with residual magnitudes |r| (N,): the update's
        fixed point eta / (1 - gamma) * q / max q."""
        self.lam = self.bound * self.normalized(r_abs)
        return self.lam

    def multipliers(self, r_abs: torch.Tensor) -> torch.Tensor:
        """The multipliers this evaluation uses, from the residual magnitudes ``r_abs`` (N,) of
        the current points: the first evaluation of a run starts at ``lambda0`` and updates;
        the first on new points (after :meth:`new_points`) takes :meth:`start`; then updated
        at every evaluation, or kept while held."""
        if self.lam is None:
            if self.updates > 0 or self.held:
                return self.start(r_abs)
            self.lam = torch.full_like(r_abs.detach(), self.lambda0)
        return self.lam if self.held else self.update(r_abs)

    def new_points(self) -> None:
        """The points were redrawn: the next evaluation starts their multipliers."""
        self.lam = None

    def hold(self) -> None:
        """From now on, multipliers change only on new points (:meth:`new_points`)."""
        self.held = True

    def scalars(self) -> Dict[str, float]:
        if self.lam is None:
            return {}
        lam = self.lam
        return {"attention/mean": float(lam.mean()), "attention/max": float(lam.max()),
                "attention/min": float(lam.min()), "attention/std": float(lam.std())
                if lam.numel() > 1 else 0.0}

    def state_dict(self) -> dict:
        return {"kind": self.kind, "updates": self.updates, "held": self.held,
                "draws": self.draws,
                "lam": None if self.lam is None else self.lam.detach().cpu().clone()}

    def load_state_dict(self, state: dict, like: torch.Tensor) -> None:
        self.updates, self.held = int(state["updates"]), bool(state["held"])
        self.draws = int(state.get("draws", 0))
        lam = state["lam"]
        self.lam = None if lam is None else lam.to(dtype=like.dtype, device=like.device)


__all__ = ["ResidualAttention", "KINDS", "QN_MODES"]
