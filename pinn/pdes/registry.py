"""Problem registry: keys equal the YAML file names in configs/pde/."""
from __future__ import annotations

from typing import Dict, Type

from omegaconf import DictConfig

from pinn.pdes.base import PDE
from pinn.pdes.burgers import BurgersPDE
from pinn.pdes.heat import HeatPDE

PDES: Dict[str, Type[PDE]] = {cls.name: cls for cls in (BurgersPDE, HeatPDE)}


def build_pde(cfg: DictConfig) -> PDE:
    """The problem named by ``cfg.name`` (a ``pde`` config node)."""
    if cfg.name not in PDES:
        raise ValueError(f"pde.name={cfg.name!r} is not allowed: one of {', '.join(sorted(PDES))}")
    return PDES[cfg.name](cfg.x_min, cfg.x_max, cfg.t_min, cfg.t_max, dict(cfg.params))
