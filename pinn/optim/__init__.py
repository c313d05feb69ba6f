"""Optimizers beyond torch's: dense quasi-Newton methods and their line search."""
from pinn.optim.dense import METHODS, DenseQuasiNewton, update_coefficients, update_inverse_hessian
from pinn.optim.line_search import LineSearchResult, strong_wolfe

__all__ = ["METHODS", "DenseQuasiNewton", "LineSearchResult", "strong_wolfe",
           "update_coefficients", "update_inverse_hessian"]
