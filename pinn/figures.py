"""Figures of a solution over (x, t): fields and time slices (matplotlib, Agg backend)."""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

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
        given = np.isfinite(ref)  # nan outside a region of shapes
        pred, ref = pred[given], ref[given]
        rel = float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), 1e-300))
        parts.append(f"relative L2 of {name} {rel:.2e}")
    return " | ".join(parts)


def _extreme(fn, data: np.ndarray) -> float:
    """``np.nanmin``/``np.nanmax`` of ``data``; nan when every entry is nan (no warning)."""
    return float(fn(data)) if np.isfinite(data).any() else float("nan")


def prediction_figure(x: np.ndarray, t: np.ndarray, pred: np.ndarray,
                      ref: Optional[np.ndarray], name: str = "u", title: str = ""):
    """Prediction, reference and absolute error over (x, t) for one output: arrays (Nt, Nx),
    t across and x up (:func:`plane_figure`).

    Returns a matplotlib Figure (Agg backend; the caller closes it).
    """
    return plane_figure(t, x, pred.T, None if ref is None else ref.T, "t", "x", name,
                        f"{name}(x, t)", title)


def plane_figure(h: np.ndarray, v: np.ndarray, pred: np.ndarray, ref: Optional[np.ndarray],
                 h_label: str, v_label: str, name: str = "u", field: str = "",
                 title: str = "", aspect: str = "auto"):
    """Prediction, reference and absolute error of one output over a plane: arrays (Nv, Nh),
    ``h`` across and ``v`` up.

    The error panel has a log colour scale over ``ERROR_DECADES`` decades below its maximum
    (stated in its title), so that an error concentrated at a front or a shock is visible.
    ``title`` (see :func:`headline`) goes above the panels.

    Returns a matplotlib Figure (Agg backend; the caller closes it).
    """
    field = field or f"{name}({h_label}, {v_label})"
    panels = [(f"prediction {field}", pred, "viridis")]
    if ref is not None:
        err = np.abs(pred - ref)
        panels += [(f"reference {field}", ref, "viridis"),
                   (f"|error| of {name}, max {_extreme(np.nanmax, err):.2e} (log scale)", err,
                    "magma")]
    from matplotlib.colors import LogNorm

    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6),
                             constrained_layout=True, squeeze=False)
    extent = (h[0], h[-1], v[0], v[-1])
    # nan outside a region of shapes: drawn empty (holes stay holes)
    vmin = min(_extreme(np.nanmin, p) for _, p, c in panels if c == "viridis")
    vmax = max(_extreme(np.nanmax, p) for _, p, c in panels if c == "viridis")
    for ax, (panel, data, cmap) in zip(axes[0], panels):
        if cmap == "viridis":
            lim = {"vmin": vmin, "vmax": vmax}
        else:
            top = _extreme(np.nanmax, data)
            if not top > 1e-200:  # an exact fit (a hard initial condition's first slice)
                top = 1e-16  # or an empty panel: a flat colour scale at rounding level
            lim = {"norm": LogNorm(vmin=top * 10.0**-ERROR_DECADES, vmax=top)}
            data = np.maximum(data, top * 10.0**-ERROR_DECADES)  # exact zeros have no log
        im = ax.imshow(data, origin="lower", aspect=aspect, extent=extent, cmap=cmap, **lim)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(h_label)
        ax.set_ylabel(v_label)
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def line_figure(x: np.ndarray, pred: np.ndarray, ref: Optional[np.ndarray], label: str = "x",
                name: str = "u", title: str = ""):
    """One output along one axis: prediction (solid) against reference (dashed); (Nx,)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.4), constrained_layout=True)
    ax.plot(x, pred, "C0-", lw=1.5, label="prediction")
    if ref is not None:
        ax.plot(x, ref, "k--", lw=1.0, label="reference")
    ax.set_xlabel(label)
    ax.set_ylabel(f"{name}({label})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def grid_figures(axes: Sequence[str], coords: Sequence[np.ndarray], pred: np.ndarray,
                 ref: Optional[np.ndarray], name: str = "u", title: str = "") -> list:
    """The figures of one output on an evaluation grid (arrays with one dimension per axis in
    reverse order, see :mod:`pinn.evaluation`), as (suffix, Figure) pairs: a line in one
    dimension; in (x, t) the map over (t, x); in two space dimensions the map over (x, y);
    with more axes, maps over the first two axes at the first, middle and last value of the
    others (``@t=0.5``, ``@z=0``)."""
    if len(axes) == 1:
        return [("", line_figure(coords[0], pred, ref, axes[0], name, title))]
    if tuple(axes) == ("x", "t"):
        return [("", prediction_figure(coords[0], coords[1], pred, ref, name, title))]
    if len(axes) == 2:  # two space axes: drawn to scale (a disk stays round)
        return [("", plane_figure(coords[0], coords[1], pred, ref, axes[0], axes[1], name,
                                  title=title, aspect="equal" if "t" not in axes else "auto"))]
    out = []
    last = coords[-1]
    for i in sorted({0, len(last) // 2, len(last) - 1}):
        sub_axes, sub_coords = list(axes[:-1]), list(coords[:-1])
        p, r = pred[i], None if ref is None else ref[i]
        tag = f"@{axes[-1]}={last[i]:.3g}"
        out.extend((tag + s, f) for s, f in
                   grid_figures(sub_axes, sub_coords, p, r, name, f"{title} | {tag[1:]}"))
    return out


def output_figures(grid, pred: np.ndarray, outputs: Sequence[str], problem: str, step: int,
                   run: str) -> Iterator[tuple]:
    """The figures of every output of ``pred`` on the evaluation grid ``grid``
    (:class:`pinn.evaluation.EvalGrid`), titled by :func:`headline`, as (tag, Figure) pairs
    with the tags ``prediction/<output><suffix>`` of TensorBoard."""
    for k, name in enumerate(outputs):
        ref = None if grid.reference is None else grid.reference[..., k]
        title = headline(problem, step, pred[..., k], ref, name, run)
        for suffix, fig in grid_figures(grid.axes, grid.coords, pred[..., k], ref, name, title):
            yield f"prediction/{name}{suffix}", fig


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


def attention_figure(points: np.ndarray, lam: np.ndarray, axes: Sequence[str], title: str = ""):
    """The interior points (N, d) coloured by their attention multipliers lambda (N,), over the
    first two axes (time across where the problem has it, as the solution figures): where the
    residual has drawn the training's attention. Returns a Figure (the caller closes it)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    h, v = (points.shape[1] - 1, 0) if axes[-1] == "t" and len(axes) > 1 else (0, 1 % len(axes))
    order = np.argsort(lam)  # the largest multipliers drawn last, on top
    dots = ax.scatter(points[order, h], points[order, v] if len(axes) > 1 else lam[order],
                      c=lam[order], s=4, cmap="viridis", linewidths=0)
    ax.set_xlabel(axes[h])
    ax.set_ylabel(axes[v] if len(axes) > 1 else "lambda")
    fig.colorbar(dots, ax=ax, label="lambda (attention multiplier)")
    ax.set_title(title or f"attention multipliers: {lam.size} points, mean {lam.mean():.3g}, "
                 f"max {lam.max():.3g}", fontsize=9)
    return fig
