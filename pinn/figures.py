"""Figures of a solution over (x, t): fields and time slices (matplotlib, Agg backend)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

ERROR_DECADES = 4  # the error panel's log colour scale spans this many decades below its max


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first use: a run that draws no
    figure (log.figures=false, a search's trials) does not pay its import (0.4 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def headline(problem: str, step: int, pred: np.ndarray, ref: Optional[np.ndarray],
             name: str = "u", run: str = "") -> str:
    """The title a figure carries: problem, run, step and the relative L2 error of ``name``."""
    parts = [problem] + ([run] if run else []) + [f"step {step}"]
    if ref is not None:
        rel = float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), 1e-300))
        parts.append(f"relative L2 of {name} {rel:.2e}")
    return " | ".join(parts)


def prediction_figure(x: np.ndarray, t: np.ndarray, pred: np.ndarray,
                      ref: Optional[np.ndarray], name: str = "u", title: str = ""):
    """Prediction, reference and absolute error over (x, t) for one output: arrays (Nt, Nx).

    The error panel has a log colour scale over ``ERROR_DECADES`` decades below its maximum
    (stated in its title), so that an error concentrated at a front or a shock is visible.
    ``title`` (see :func:`headline`) goes above the panels.

    Returns a matplotlib Figure (Agg backend; the caller closes it).
    """
    panels = [(f"prediction {name}(x, t)", pred, "viridis")]
    if ref is not None:
        err = np.abs(pred - ref)
        panels += [(f"reference {name}(x, t)", ref, "viridis"),
                   (f"|error| of {name}, max {float(err.max()):.2e} (log scale)", err, "magma")]
    from matplotlib.colors import LogNorm

    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6),
                             constrained_layout=True, squeeze=False)
    extent = (t[0], t[-1], x[0], x[-1])
    vmin = min(float(p.min()) for _, p, c in panels if c == "viridis")
    vmax = max(float(p.max()) for _, p, c in panels if c == "viridis")
    for ax, (panel, data, cmap) in zip(axes[0], panels):
        if cmap == "viridis":
            lim = {"vmin": vmin, "vmax": vmax}
        else:
            top = max(float(data.max()), 1e-300)
            lim = {"norm": LogNorm(vmin=top * 10.0**-ERROR_DECADES, vmax=top)}
            data = np.maximum(data, top * 10.0**-ERROR_DECADES)  # exact zeros have no log
        im = ax.imshow(data.T, origin="lower", aspect="auto", extent=extent, cmap=cmap, **lim)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("t")
        ax.set_ylabel("x")
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def slices_figure(x: np.ndarray, t: np.ndarray, pred: np.ndarray, ref: Optional[np.ndarray],
                  times: Sequence[float], name: str = "u", title: str = ""):
    """u(x) at a few times: prediction (solid) against reference (dashed); arrays (Nt, Nx)."""
    plt = pyplot()
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
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
