"""pinn: physics-informed neural networks with explicit batch-normalization semantics."""
from pinn.api import load_run
from pinn.coords import Axes
from pinn.derivatives import compute_derivatives
from pinn.derivatives_nd import derivatives_by_name
from pinn.nn import calibrate_bn, set_bn_mode

__all__ = ["load_run", "compute_derivatives", "derivatives_by_name", "Axes", "calibrate_bn",
           "set_bn_mode"]
__version__ = "0.1.0"
