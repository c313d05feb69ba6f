"""Problems: one module each; they never import the trainer or Hydra."""
from pinn.pdes.base import PDE
from pinn.pdes.registry import PDES, build_pde

__all__ = ["PDE", "PDES", "build_pde"]
