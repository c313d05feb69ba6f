"""Error measures against a reference solution."""
from __future__ import annotations

import numpy as np


def relative_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """||pred - ref||_2 / ||ref||_2 over all entries."""
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(np.asarray(pred) - np.asarray(ref)))
    return num / den if den > 0 else num


def max_abs(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(pred) - np.asarray(ref))))
