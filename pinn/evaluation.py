"""Prediction on a dense grid over the domain and errors against the problem's reference.

A grid holds evenly spaced coordinates per axis. Arrays on it have one dimension per axis in
the *reverse* order of the axes, then the outputs: (Nt, Nx, n_out) for a problem in (x, t),
(Ny, Nx, n_out) for one in (x, y) (an image: rows are y), (Nt, Ny, Nx, n_out) for (x, y, t).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from pinn.fields import point_fields
from pinn.pdes.problem import PDE
from pinn.pdes.unknowns import learned_values
from pinn.reference.metrics import max_abs, relative_l2

# Grid points per axis where a problem in more than (x, t) gives none (pde.eval_points),
# by the number of axes: about 40,000 points in 2-D and 3-D, 200,000 in 4-D.
DEFAULT_POINTS = {1: 1001, 2: 201, 3: 35, 4: 21}


@dataclass
class EvalGrid:
    """Coordinates per axis and the reference on the grid (see the module docstring), or None
    when the problem has none.

    ``EvalGrid(x, t, reference)`` is the grid of a problem in (x, t)."""

    x: np.ndarray
    t: Optional[np.ndarray]
    reference: Optional[np.ndarray]
    axes: Tuple[str, ...] = ("x", "t")
    others: Tuple[np.ndarray, ...] = ()  # the coordinates of the axes after the first two
    mask: Optional[np.ndarray] = None  # (*shape) True inside a region of shapes; None: a box

    @property
    def coords(self) -> Tuple[np.ndarray, ...]:
        """The coordinates of every axis, in the axes' order."""
        first = (self.x,) if self.t is None else (self.x, self.t)
        return first + self.others

    @property
    def shape(self) -> Tuple[int, ...]:
        """The grid's array shape without outputs: the axes' counts in reverse order."""
        return tuple(len(c) for c in reversed(self.coords))

    def mesh(self) -> Dict[str, np.ndarray]:
        """Axis name -> its coordinate at every grid point, each of :attr:`shape`."""
        grids = np.meshgrid(*reversed(self.coords), indexing="ij")
        return dict(zip(self.axes, reversed(grids)))

    def points(self) -> np.ndarray:
        """Every grid point, (prod(shape), d), columns in the axes' order, rows in the
        arrays' (C) order."""
        mesh = self.mesh()
        return np.stack([mesh[a].ravel() for a in self.axes], axis=1)

    def axis(self, name: str) -> np.ndarray:
        return self.coords[self.axes.index(name)]


def grid_counts(pde: PDE, cfg: Mapping[str, Any]) -> Dict[str, int]:
    """Grid points per axis of a ``pde`` config node: ``eval_nx``/``eval_nt`` for a problem
    written the 1-D way; ``eval_points`` (axis -> count, the rest by :data:`DEFAULT_POINTS`)
    otherwise."""
    if pde.legacy:
        return {"x": int(cfg.get("eval_nx", 256)), "t": int(cfg.get("eval_nt", 101))}
    given = dict(cfg.get("eval_points") or {})
    default = DEFAULT_POINTS[pde.axes.dim]
    return {a: int(given.get(a, default)) for a in pde.axes.names}


def make_eval_grid(pde: PDE, cfg: Mapping[str, Any] = None, nt: Optional[int] = None,
                   counts: Optional[Mapping[str, int]] = None) -> EvalGrid:
    """The evaluation grid of a problem; the reference is computed once, here.

    Call it with the ``pde`` config node, with explicit ``counts`` per axis, or (a problem in
    (x, t)) as ``make_eval_grid(pde, nx, nt)``."""
    if counts is None:
        counts = ({"x": int(cfg), "t": int(nt)} if nt is not None else grid_counts(pde, cfg))
    coords = [np.linspace(lo, hi, int(counts[a]))
              for a, lo, hi in zip(pde.axes.names, pde.domain.lower, pde.domain.upper)]
    if pde.axes.names == ("x", "t"):
        return EvalGrid(coords[0], coords[1], pde.reference(coords[0], coords[1]))
    grid = EvalGrid(coords[0], coords[1] if len(coords) > 1 else None, None,
                    axes=pde.axes.names, others=tuple(coords[2:]))
    if pde.has_exact:
        grid.reference = pde.exact_on(grid.mesh())
    if pde.region is not None:  # the bounding box's grid, masked to the region
        grid.mask = pde.region.inside(torch.as_tensor(grid.points())).numpy().reshape(grid.shape)
        if grid.reference is not None:
            grid.reference[~grid.mask] = np.nan
    return grid


@torch.no_grad()
def predict_grid(model: nn.Module, grid: EvalGrid, chunk: int = 65536) -> np.ndarray:
    """The network in predict mode (``eval()``, frozen statistics) on the grid:
    (*grid.shape, n_out)."""
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        pts = torch.as_tensor(grid.points(), dtype=p.dtype, device=p.device)
        out = torch.cat([model(pts[i : i + chunk]) for i in range(0, pts.shape[0], chunk)])
    finally:
        model.train(was_training)
    pred = out.double().cpu().numpy().reshape(*grid.shape, -1)
    if grid.mask is not None:
        pred[~grid.mask] = np.nan  # outside the region: no prediction
    return pred


def grid_errors(pred: np.ndarray, grid: EvalGrid, pde: PDE) -> Dict[str, float]:
    """Relative L2 and max-abs error per output, keyed ``l2_rel/<name>``, ``max_abs/<name>``,
    then the same for each of the problem's ``derived`` quantities (e.g. NLS's |h|)."""
    if grid.reference is None:
        return {}
    errs = {}
    inside = Ellipsis if grid.mask is None else grid.mask  # a region: its grid points only
    for k, name in enumerate(pde.outputs):
        errs[f"l2_rel/{name}"] = relative_l2(pred[..., k][inside], grid.reference[..., k][inside])
        errs[f"max_abs/{name}"] = max_abs(pred[..., k][inside], grid.reference[..., k][inside])
    if pde.derived:
        mesh = grid.mesh()
        got = pde.derived_values(pred, mesh)
        want = pde.derived_values(grid.reference, mesh)
        for name in pde.derived:
            errs[f"l2_rel/{name}"] = relative_l2(got[name][inside], want[name][inside])
            errs[f"max_abs/{name}"] = max_abs(got[name][inside], want[name][inside])
    return errs


@torch.no_grad()
def node_errors(model: nn.Module, pde: PDE) -> Dict[str, float]:
    """Relative L2 and max-abs error per output at the nodes of the problem's reference file
    (where it gives a value), the network in predict mode; {} without a file."""
    ref = pde.reference_data
    if ref is None:
        return {}
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        pred = model(torch.as_tensor(ref.points, dtype=p.dtype, device=p.device))
    finally:
        model.train(was_training)
    pred = pred.double().cpu().numpy()[:, [pde.outputs.index(o) for o in ref.outputs]]
    errs = {}
    for j, name in enumerate(ref.outputs):
        given = ~np.isnan(ref.values[:, j])
        errs[f"l2_rel/{name}"] = relative_l2(pred[given, j], ref.values[given, j])
        errs[f"max_abs/{name}"] = max_abs(pred[given, j], ref.values[given, j])
    return errs


def residual_statistics(model: nn.Module, pde: PDE, grid: EvalGrid,
                        chunk: int = 8192) -> Dict[str, float]:
    """Residual of the predict-mode network on the grid: mean |r|, RMS and max |r| per equation
    (``residual/<i>/...``), derivatives by autograd in chunks."""
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        pts = torch.as_tensor(grid.points(), dtype=p.dtype, device=p.device)
        if grid.mask is not None:  # a region: its grid points only
            pts = pts[torch.as_tensor(grid.mask.reshape(-1), device=p.device)]
        parts = []
        for i in range(0, pts.shape[0], chunk):
            q = pts[i : i + chunk]
            f = point_fields(model, q, pde.wanted, create_graph=False)
            parts.append(pde.residual_at(q, f, learned_values(model)).detach())
        r = torch.cat(parts).double().cpu().numpy()  # (points, n_equations)
    finally:
        model.train(was_training)
    out = {}
    for k in range(r.shape[1]):
        a = np.abs(r[:, k])
        out[f"residual/{k}/mean_abs"] = float(a.mean())
        out[f"residual/{k}/rms"] = float(np.sqrt((a**2).mean()))
        out[f"residual/{k}/max_abs"] = float(a.max())
    return out


def _quadrature(region, j: int, n: int) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """Midpoint-rule nodes on piece ``j`` of a region (uniform by measure in the piece's unit
    parameter, n in all; a square grid in 3-D), the outward normals there and the weight of
    each node; the nodes off the region's boundary are dropped."""
    rp, k = region.pieces[j], region.k
    if k == 2:
        u = ((torch.arange(n, dtype=torch.float64) + 0.5) / n)[:, None]
    else:
        m = max(int(round(n ** 0.5)), 1)
        g = (torch.arange(m, dtype=torch.float64) + 0.5) / m
        u = torch.cartesian_prod(g, g)
        n = m * m
    p, normal = rp.piece.draw(u)
    if rp.flip:
        normal = -normal
    keep = region._keep(p, normal)
    return p[keep], normal[keep], rp.piece.measure / n


@torch.no_grad()
def quantity_values(model: nn.Module, pde: PDE) -> Dict[str, float]:
    """The problem's quantities (:mod:`pinn.pdes.quantities`) of the predict-mode network:
    name -> value; {} for a problem without any."""
    if not pde.quantities:
        return {}
    was_training = model.training
    model.eval()
    out: Dict[str, float] = {}
    try:
        p0 = next(model.parameters())
        for q in pde.quantities:
            if q.kind == "formula":
                out[q.name] = float(q.expr({**pde.params, **out}))
                continue
            if q.kind == "line":
                continue  # a profile: see profiles()
            if q.kind == "at":
                pts = torch.tensor([q.point], dtype=p0.dtype, device=p0.device)
                normals, weight = None, 1.0
                sets = [(pts, None, 1.0)]
            else:
                sets = []
                for j in q.pieces:
                    pts, normals, weight = _quadrature(pde.region, j, q.points)
                    sets.append((pts.to(p0), normals.to(p0), weight))
            total = 0.0
            for pts, normals, weight in sets:
                with torch.enable_grad():
                    f = point_fields(model, pts, [d for _, d in q.fields], create_graph=False)
                env = {**pde.params, **pde.columns(pts),
                       **{name: f[d].detach() for name, d in q.fields}}
                if normals is not None:
                    env.update({f"n_{a}": normals[:, i:i + 1]
                                for i, a in enumerate(pde.axes.space)})
                v = q.expr(env)
                v = v if isinstance(v, torch.Tensor) else torch.full_like(pts[:, :1], float(v))
                total += float(v.double().sum()) * weight
            out[q.name] = total
    finally:
        model.train(was_training)
    return out


def quantity_errors(values: Mapping[str, float], pde: PDE) -> Dict[str, float]:
    """``rel/<name>``: |value - reference| / |reference| for the quantities with a reference
    value."""
    return {f"rel/{k}": abs(values[k] - ref) / abs(ref) if ref != 0 else abs(values[k])
            for k, ref in pde.reference_quantities.items() if k in values}


@torch.no_grad()
def profiles(model: nn.Module, pde: PDE) -> Dict[str, np.ndarray]:
    """The problem's profiles (``line`` quantities) of the predict-mode network: name ->
    (points, d + 2) array, columns the distance along the line, the coordinates, the value."""
    lines = [q for q in pde.quantities if q.kind == "line"]
    if not lines:
        return {}
    was_training = model.training
    model.eval()
    out: Dict[str, np.ndarray] = {}
    try:
        p0 = next(model.parameters())
        for q in lines:
            d = pde.axes.dim
            a = torch.tensor(q.point[:d], dtype=torch.float64)
            b = torch.tensor(q.point[d:], dtype=torch.float64)
            s = torch.linspace(0, 1, q.points, dtype=torch.float64)[:, None]
            pts = (a + s * (b - a)).to(p0)
            with torch.enable_grad():
                f = point_fields(model, pts, [d_ for _, d_ in q.fields], create_graph=False)
            env = {**pde.params, **pde.columns(pts),
                   **{name: f[d_].detach() for name, d_ in q.fields}}
            v = q.expr(env)
            v = v if isinstance(v, torch.Tensor) else torch.full_like(pts[:, :1], float(v))
            dist = s * float((b - a).norm())
            out[q.name] = torch.cat([dist, pts.double().cpu(), v.double().cpu()], 1).numpy()
    finally:
        model.train(was_training)
    return out


def write_profiles(values: Mapping[str, np.ndarray], folder, pde: PDE) -> None:
    """Each profile as ``<folder>/<name>.csv`` (header: s, the axes, the name)."""
    from pathlib import Path

    if not values:
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in values.items():
        header = ",".join(["s", *pde.axes.names, name])
        np.savetxt(folder / f"{name}.csv", table, delimiter=",", header=header, comments="")
