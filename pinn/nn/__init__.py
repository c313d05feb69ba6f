"""Networks: the MLP and batch normalization with explicit modes."""
from __future__ import annotations

import torch
from omegaconf import DictConfig

from pinn.config import choice
from pinn.nn.mlp import MLP
from pinn.nn.norm import BatchNorm, bn_layers, calibrate_bn, set_bn_mode, shared_batch_statistics

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_model(cfg: DictConfig, n_out: int) -> MLP:
    """The network of a run config, in the run's precision, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    p = cfg.pde
    model = MLP(
        n_out=n_out,
        depth=cfg.model.depth,
        width=cfg.model.width,
        activation=choice(cfg.model.activation),
        norm=choice(cfg.model.norm),
        lower=(p.x_min, p.t_min),
        upper=(p.x_max, p.t_max),
        bn_eps=cfg.bn.eps,
        bn_momentum=cfg.bn.momentum,
        bn_mode=choice(cfg.bn.mode),
    )
    return model.to(DTYPES[choice(cfg.precision)])


__all__ = ["MLP", "BatchNorm", "bn_layers", "build_model", "calibrate_bn", "set_bn_mode",
           "shared_batch_statistics", "DTYPES"]
