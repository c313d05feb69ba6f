"""Problems. Each is a YAML file in ``configs/pde/`` (its name is the registry key); this
package turns one into a :class:`PDE`. It never imports the trainer or Hydra."""
from typing import Any, Mapping

from pinn.pdes.problem import BOUNDARY_KINDS, PDE


def build_pde(cfg: Mapping[str, Any]) -> PDE:
    """The problem of a ``pde`` config node (a DictConfig or a plain mapping)."""
    return PDE(cfg)


__all__ = ["PDE", "BOUNDARY_KINDS", "build_pde"]
