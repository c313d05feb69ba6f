"""Collocation points: plain draws (uniform, scrambled Sobol) and residual-based adaptive
redraws (RAD). Every strategy draws from the generator it is given and has a ``state_dict``."""
from pinn.sampling.points import Batch, Sampler
from pinn.sampling.rad import rad_probabilities, rad_select, weighted_select

__all__ = ["Batch", "Sampler", "rad_probabilities", "rad_select",
           "weighted_select"]
