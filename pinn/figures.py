"""Figures of a solution over (x, t): fields and time slices (matplotlib, Agg backend)."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def prediction_figure(x: np.ndarray, t: np.ndarray, pred: np.ndarray,
                      ref: Optional[np.ndarray], name: str = "u"):
    """Prediction, reference and absolute error over (x, t) for one output: arrays (Nt, Nx).

    Returns a matplotlib Figure (Agg backend; the caller closes it).
    """
    panels = [(f"prediction {name}(x, t)", pred, "viridis")]
    if ref is not None:
        panels += [(f"reference {name}(x, t)", ref, "viridis"),
                   (f"|error| of {name}", np.abs(pred - ref), "magma")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6),
                             constrained_layout=True, squeeze=False)
    extent = (t[0], t[-1], x[0], x[-1])
    vmin = min(float(p.min()) for _, p, c in panels if c == "viridis")
    vmax = max(float(p.max()) for _, p, c in panels if c == "viridis")
    for ax, (title, data, cmap) in zip(axes[0], panels):
        lim = {"vmin": vmin, "vmax": vmax} if cmap == "viridis" else {}
        im = ax.imshow(data.T, origin="lower", aspect="auto", extent=extent, cmap=cmap, **lim)
        ax.set_title(title)
        ax.set_xlabel("t")
        ax.set_ylabel("x")
        fig.colorbar(im, ax=ax)
    return fig



def slices_figure(x: np.ndarray, t: np.ndarray, pred: np.ndarray, ref: Optional[np.ndarray],
                  times: Sequence[float], name: str = "u"):
    """u(x) at a few times: prediction (solid) against reference (dashed); arrays (Nt, Nx)."""
    fig, axes = plt.subplots(1, len(times), figsize=(3.2 * len(times), 3.0),
                             constrained_layout=True, squeeze=False, sharey=True)
    for ax, tv in zip(axes[0], times):
        i = int(np.argmin(np.abs(t - tv)))
        ax.plot(x, pred[i], "C0-", lw=1.5, label="prediction")
        if ref is not None:
            ax.plot(x, ref[i], "k--", lw=1.0, label="reference")
        ax.set_title(f"t = {t[i]:.3g}")
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{name}(x, t)")
    axes[0][0].legend(loc="best", fontsize=8)
    return fig
