"""Input checks shared by the reference solvers."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def check_points(x: np.ndarray, t: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """x, t as finite 1-D float64 arrays with t >= 0; ValueError otherwise."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.ndim != 1 or t.ndim != 1:
        raise ValueError(f"x and t must be 1-D arrays, got shapes {x.shape} and {t.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t))):
        raise ValueError("x and t must be finite")
    if t.size and t.min() < 0.0:
        raise ValueError(f"times must be >= 0, got min(t) = {t.min()!r}")
    return x, t


def check_domain(domain) -> Tuple[float, float]:
    """(x_min, x_max) as finite floats with x_min < x_max; ValueError otherwise."""
    try:
        x_min, x_max = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be two numbers (x_min, x_max), got {domain!r}") from None
    if not (math.isfinite(x_min) and math.isfinite(x_max) and x_min < x_max):
        raise ValueError(f"domain must be (x_min, x_max), finite with x_min < x_max, got "
                         f"{(x_min, x_max)!r}")
    return x_min, x_max
