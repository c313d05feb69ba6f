"""Fully connected network on (x, t)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from pinn.nn.embedding import Embedding, HardInitial
from pinn.nn.norm import BatchNorm


class Sin(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sin(h)


ACTIVATIONS = {"tanh": nn.Tanh, "gelu": nn.GELU, "sin": Sin, "silu": nn.SiLU}


class MLP(nn.Module):
    """``depth`` hidden blocks [Linear(width), norm, activation] and a linear head.

    Inputs are first mapped affinely from the problem's domain to [-1, 1]^2, a fixed transform
    (buffers, not parameters), so that the same initialization suits any domain.

    Args:
        n_out: number of output channels.
        depth, width: hidden blocks and their width.
        activation: a key of :data:`ACTIVATIONS`.
        norm: ``none`` or ``batch``.
        lower, upper: domain bounds, one number per input column (2 for (x, t); as many as
            the problem's axes, see :mod:`pinn.coords`).
        bn_eps, bn_momentum, bn_mode: see :class:`pinn.nn.norm.BatchNorm`.
        embedding: fixed features of the normalized inputs (periodic in x, Fourier features;
            :class:`pinn.nn.embedding.Embedding`), or None for (x^, t^) themselves.
        output_transform: a map (xt, network output) -> output that imposes a condition
            exactly (:class:`pinn.nn.embedding.HardInitial`), or None.
    """

    def __init__(self, n_out: int, depth: int, width: int, activation: str = "tanh",
                 norm: str = "none", lower: Sequence[float] = (-1.0, 0.0),
                 upper: Sequence[float] = (1.0, 1.0), bn_eps: float = 1e-5,
                 bn_momentum: Optional[float] = 0.1, bn_mode: str = "detached",
                 embedding: Optional[Embedding] = None,
                 output_transform: Optional[HardInitial] = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r} is not allowed: one of "
                             f"{', '.join(ACTIVATIONS)}")
        if norm not in ("none", "batch"):
            raise ValueError(f"model.norm={norm!r} is not allowed: one of none, batch")
        if len(lower) != len(upper) or not lower:
            raise ValueError(f"MLP bounds: lower {list(lower)} and upper {list(upper)} must give "
                             "one number per input column")
        lo = torch.tensor([float(v) for v in lower], dtype=torch.float64)
        hi = torch.tensor([float(v) for v in upper], dtype=torch.float64)
        self.register_buffer("in_center", (hi + lo) / 2)
        self.register_buffer("in_scale", 2.0 / (hi - lo))
        self.embedding = embedding
        self.output_transform = output_transform
        blocks = []
        self.n_in = len(lower)  # input columns
        n_in = self.n_in if embedding is None else embedding.n_features
        for _ in range(depth):
            layers = [nn.Linear(n_in, width)]
            if norm == "batch":
                layers.append(BatchNorm(width, eps=bn_eps, momentum=bn_momentum, mode=bn_mode))
            layers.append(ACTIVATIONS[activation]())
            blocks.append(nn.Sequential(*layers))
            n_in = width
        self.hidden = nn.Sequential(*blocks)
        self.head = nn.Linear(n_in, n_out)
        self.n_out = n_out
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, xt: torch.Tensor) -> torch.Tensor:  # (N, n_in) -> (N, n_out)
        # The bounds are buffers in the network's precision (build_model casts the whole
        # network, these included); the cast here serves inputs of another dtype.
        h = (xt - self.in_center.to(xt.dtype)) * self.in_scale.to(xt.dtype)
        if self.embedding is not None:
            h = self.embedding(h)
        out = self.head(self.hidden(h))
        if self.output_transform is not None:
            out = self.output_transform(xt, out)
        return out
