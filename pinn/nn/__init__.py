"""Networks: the MLP and batch normalization with explicit modes."""
from __future__ import annotations

import torch
from omegaconf import DictConfig

from pinn.config import choice
from pinn.pdes.problem import PDE
from pinn.nn.embedding import Embedding, HardInitial, check_hard_boundary, check_periodic_lift
from pinn.nn.hard import HardConstraint, build_hard_constraint
from pinn.nn.mlp import MLP
from pinn.pdes.unknowns import LearnedParameters
from pinn.nn.norm import BatchNorm, bn_layers, calibrate_bn, set_bn_mode, shared_batch_statistics

FOURIER_SEED_OFFSET = 7919  # the Fourier-feature generator's seed is cfg.seed plus this

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_model(cfg: DictConfig, pde: PDE) -> MLP:
    """The network of a run config for problem ``pde``, in the run's precision, seeded by
    ``cfg.seed`` (the random Fourier features by a generator of their own, seeded from it)."""
    m = cfg.model
    periodic_axes = [pde.axes.index(a) for a in pde.domain.periodic]
    if m.periodic and not periodic_axes and pde.axes.names != ("x", "t"):
        raise ValueError(f"model.periodic=true embeds the periodic axes; {pde.name} has none: "
                         "declare them in pde.periodic")
    embedding = None
    if m.periodic or m.fourier_features:
        g = torch.Generator().manual_seed(int(cfg.seed) + FOURIER_SEED_OFFSET)
        embedding = Embedding(periodic_harmonics=int(m.harmonics) if m.periodic else 0,
                              fourier_features=int(m.fourier_features),
                              fourier_sigma=float(m.fourier_sigma), generator=g,
                              n_in=pde.axes.dim, periodic_axes=periodic_axes or (0,))
    transform = None
    if m.hard_boundary and pde.region is not None:  # shapes: approximate distance functions
        from pinn.nn.distance import build_distance_constraint

        transform = build_distance_constraint(pde, bool(m.hard_initial))
    elif (m.hard_initial or m.hard_boundary) and pde.axes.names != ("x", "t"):
        transform = build_hard_constraint(pde, bool(m.hard_initial), bool(m.hard_boundary))
    elif m.hard_initial or m.hard_boundary:
        transform = HardInitial(
            pde.initial if m.hard_initial else None,
            pde.initial_velocity if pde.initial_velocity_exprs else None, pde.t_min, pde.t_max,
            boundary=(pde.x_min, pde.x_max) if m.hard_boundary else None)
        if m.periodic and m.hard_initial:
            check_periodic_lift(transform, pde.x_min, pde.x_max)
        if m.hard_boundary:
            check_hard_boundary(pde, transform)
    torch.manual_seed(cfg.seed)
    model = MLP(
        n_out=pde.n_out,
        depth=cfg.model.depth,
        width=cfg.model.width,
        activation=choice(cfg.model.activation),
        norm=choice(cfg.model.norm),
        lower=pde.domain.lower,
        upper=pde.domain.upper,
        bn_eps=cfg.bn.eps,
        bn_momentum=cfg.bn.momentum,
        bn_mode=choice(cfg.bn.mode),
        embedding=embedding,
        output_transform=transform,
    )
    if pde.unknown:  # an inverse problem: its coefficients train, save and load with the network
        model.pde_params = LearnedParameters(pde.unknown)
    return model.to(DTYPES[choice(cfg.precision)])


__all__ = ["Embedding", "HardConstraint", "HardInitial", "MLP", "BatchNorm", "bn_layers", "build_model",
           "calibrate_bn", "set_bn_mode", "shared_batch_statistics", "DTYPES"]
