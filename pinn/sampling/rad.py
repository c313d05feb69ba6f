"""Residual-based adaptive distribution (RAD) of collocation points.

Wu, Zhu, Tan, Kartha & Lu, "A comprehensive study of non-adaptive and residual-based adaptive
sampling for physics-informed neural networks", CMAME 403 (2023) 115671, eq. (2): a point x of a
dense candidate set is chosen with probability

    p(x)  proportional to  eps(x)^k / E[eps^k] + c,

eps the absolute PDE residual at x (for systems, the Euclidean norm over the equations) and
E[.] the mean over the candidates. k = 0 or a large c gives uniform sampling; c = 0 samples
only where the residual is large. Points are drawn without replacement from the candidates.
"""
from __future__ import annotations

import torch


def rad_probabilities(residual_abs: torch.Tensor, k: float, c: float) -> torch.Tensor:
    """The RAD probabilities of eq. (2).

    Args:
        residual_abs: (M,) absolute residuals of the candidates.
        k, c: the exponent and the uniform share (both >= 0).

    Returns:
        (M,) float64 probabilities summing to 1; uniform when every weight is zero.
    """
    eps = residual_abs.detach().to(torch.float64).reshape(-1)
    powered = eps.pow(k)
    mean = powered.mean()
    weights = (powered / mean if mean > 0 else torch.zeros_like(powered)) + c
    total = weights.sum()
    if not torch.isfinite(total) or total <= 0:
        return torch.full_like(eps, 1.0 / eps.numel())
    return weights / total


def weighted_select(weights: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` candidates drawn without replacement, each with probability
    proportional to its weight (uniform when every weight is zero).

    Args:
        weights: (M,) non-negative selection weights of the candidates, M >= n.
        n: points to keep.
        generator: the source of randomness (a seed fixes the draw).

    Returns:
        (n,) int64 indices into the candidates.
    """
    w = weights.detach().to(torch.float64).reshape(-1)
    if n > w.numel():
        raise ValueError(f"RAD needs at least as many candidates as points: {w.numel()} < {n}")
    total = w.sum()
    if not (torch.isfinite(total) and total > 0):
        w = torch.full_like(w, 1.0 / w.numel())
    return torch.multinomial(w, n, replacement=False, generator=generator)  # normalizes w


def rad_select(residual_abs: torch.Tensor, n: int, k: float, c: float,
               generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` candidates drawn without replacement with the RAD probabilities.

    Args:
        residual_abs: (M,) absolute residuals of the candidates, M >= n.
        n: points to keep.
        k, c: see :func:`rad_probabilities`.
        generator: the source of randomness (a seed fixes the draw).

    Returns:
        (n,) int64 indices into the candidates.
    """
    return weighted_select(rad_probabilities(residual_abs, k, c), n, generator)
