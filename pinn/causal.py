"""Causal weighting of the residual in time (``loss.causal``)."""
from __future__ import annotations

from typing import Callable, List, Optional

import torch


class CausalWeighting:
    """Causal weighting of the residual in time (Wang, Sankaran & Perdikaris, "Respecting
    causality for training physics-informed neural networks", CMAME 421, 116813, 2024, eqs.
    3.5-3.6): the interior points are binned into ``chunks`` equal time slices with mean
    squared residuals L_1..L_M, and the residual term is

        (1/M) sum_i w_i L_i,     w_i = exp(-eps sum_{k<i} L_k),

    the weights held constant (no gradient flows through them), so a slice counts only once
    the slices before it are resolved.

    The published method recomputes the weights at every gradient step (the Adam stage does).
    A quasi-Newton line search needs one fixed objective, so there the weights are held
    between redraws: :meth:`hold` fixes them from the current residuals, :meth:`release`
    (at every redraw) lets the next evaluation fix them again.
    """

    def __init__(self, eps: float, chunks: int, t_min: float, t_max: float):
        self.eps, self.chunks = float(eps), int(chunks)
        self.t_min, self.inv_span = float(t_min), 1.0 / (float(t_max) - float(t_min))
        self.held = False
        self._fixed: torch.Tensor | None = None
        self.last: torch.Tensor | None = None  # the weights of the last evaluation, (M,)
        # Sum over the ranks of a distributed run (pinn.distributed.all_sum), or None.
        self.reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def chunk_sums(self, res_sq: torch.Tensor, t: torch.Tensor):
        """Sum of ``res_sq`` (N,) over each time slice and the slices' point counts; (M,) each."""
        idx = ((t.reshape(-1).detach() - self.t_min) * self.inv_span * self.chunks).floor()
        idx = idx.clamp(0, self.chunks - 1).long()
        sums = res_sq.new_zeros(self.chunks).index_add(0, idx, res_sq)
        # index_add, not bincount: bincount sizes its output from the data (a device read).
        counts = res_sq.new_zeros(self.chunks).index_add(0, idx, torch.ones_like(res_sq))
        return sums, counts

    def chunk_losses(self, res_sq: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``res_sq`` (N,) over each time slice (an empty slice: 0); (M,)."""
        sums, counts = self.chunk_sums(res_sq, t)
        return sums / counts.clamp(min=1)

    def weights(self, chunk_losses: torch.Tensor) -> torch.Tensor:
        """w_i = exp(-eps sum_{k<i} L_k), detached; (M,)."""
        L = chunk_losses.detach()
        return torch.exp(-self.eps * (torch.cumsum(L, 0) - L))

    def residual_term(self, res_sq: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The causally weighted residual term of ``res_sq`` (N,) at times ``t`` (N, 1).

        With :attr:`reduce` set (several ranks, each holding a slice of the points), the slice
        losses and weights are those of the union of all ranks' points, and the returned
        value is this rank's contribution: the ranks' contributions sum to the term."""
        if self.reduce is None:
            L = self.chunk_losses(res_sq, t)
            local = L
        else:
            sums, counts = self.chunk_sums(res_sq, t)
            total = self.reduce(torch.cat([sums.detach(), counts]))  # (2M,) over all ranks
            counts_all = total[self.chunks:].clamp(min=1)
            L = total[:self.chunks] / counts_all
            local = sums / counts_all
        if self.held and self._fixed is not None:
            w = self._fixed
        else:
            w = self.weights(L)
            if self.held:
                self._fixed = w
        self.last = w
        return (w * local).mean()

    def residual_terms(self, res_sq: torch.Tensor, t: torch.Tensor) -> List[torch.Tensor]:
        """A system's causally weighted terms, one per equation (column of ``res_sq``, (N,
        n_eq)): the slice weights come from the equations' summed residuals, so that every
        equation waits for the same earlier times, and each term is (1/M) sum_i w_i L_i^(e).
        With :attr:`reduce`, this rank's contributions (see :meth:`residual_term`)."""
        n_eq = res_sq.shape[1]
        parts = [self.chunk_sums(res_sq[:, e], t) for e in range(n_eq)]
        sums = torch.stack([p[0] for p in parts])  # (n_eq, M)
        counts = parts[0][1]
        if self.reduce is not None:
            total = self.reduce(torch.cat([sums.detach().reshape(-1), counts]))
            counts = total[n_eq * self.chunks:]
            L = (total[: n_eq * self.chunks].reshape(n_eq, self.chunks)
                 / counts.clamp(min=1))
        else:
            L = sums.detach() / counts.clamp(min=1)
        local = sums / counts.clamp(min=1)
        if self.held and self._fixed is not None:
            w = self._fixed
        else:
            w = self.weights(L.sum(dim=0))
            if self.held:
                self._fixed = w
        self.last = w
        return [(w * local[e]).mean() for e in range(n_eq)]

    def hold(self) -> None:
        """From the next evaluation on, keep its weights until :meth:`release`."""
        self.held, self._fixed = True, None

    def release(self) -> None:
        """Weights fixed again at the next evaluation (held mode) or every one (otherwise)."""
        self._fixed = None

    def state_dict(self) -> dict:
        return {"held": self.held,
                "fixed": None if self._fixed is None else self._fixed.detach().cpu().tolist()}

    def load_state_dict(self, state: dict, like: torch.Tensor) -> None:
        self.held = bool(state.get("held", False))
        fixed = state.get("fixed")
        self._fixed = None if fixed is None else torch.tensor(fixed, dtype=like.dtype,
                                                               device=like.device)


__all__ = ["CausalWeighting"]
