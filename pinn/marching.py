"""Time marching (``trainer.time_windows=K``): the time interval split into K equal windows,
one network each, trained in turn.

Over a long horizon one network has to fit the whole trajectory at once, and an error early
in time is learned as truth later on (on Kuramoto-Sivashinsky the networks follow the solution
to t = 0.1-0.2 and then lose it although their residual is small). Marching solves a short
problem at a time: window k's initial condition is window k-1's prediction at their common
time (predict mode, no gradient), and window k starts from window k-1's trained parameters
(its own input scaling maps its window to the same unit interval). Wang, Sankaran & Perdikaris
(jaxpi, "PirateNets" and "An expert's guide to training PINNs", 2023) use the same scheme.

A marching run's folder holds ``window_0``, ``window_1``, ... (each an ordinary run folder:
checkpoints, TensorBoard, ``metrics.json``; its config has the window's time interval) and
``windows.json`` (the windows' times and folders); its ``metrics.json`` has the errors of the
piecewise solution on the whole interval's grid, and each window's. ``trainer.max_minutes``
is the budget of the whole run, split equally; ``trainer.steps`` and ``trainer.qn_steps``
are per window. :func:`pinn.load_run` on a marching run returns the piecewise network
(:class:`WindowedModel`).

Not with marching yet (refused in one line before anything is written): hard initial
conditions, observations (``data.file``), a reference file, ``trainer.resume``, torchrun and
searches. A stopped window ends the run; the windows before it stay in their folders.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from pinn.evaluation import EvalGrid, grid_errors, make_eval_grid, predict_grid
from pinn.paths import RunPaths
from pinn.pdes.problem import PDE
from pinn.reference.metrics import relative_l2

MANIFEST = "windows.json"


def window_edges(t_min: float, t_max: float, k: int) -> List[float]:
    """The K + 1 times that bound K equal windows of [t_min, t_max]."""
    return [float(t_min + (t_max - t_min) * i / k) for i in range(k)] + [float(t_max)]


def windows_refusal(cfg: DictConfig, pde: PDE, distributed: bool) -> Optional[str]:
    """Why ``trainer.time_windows`` cannot be used on this run, or None (also for K = 1)."""
    k = int(cfg.trainer.get("time_windows", 1))
    if k == 1:
        return None
    key = f"trainer.time_windows={k}"
    if not pde.axes.time:
        return f"{key}: pde {pde.name} is steady (no t among its axes); time windows need a " \
               "problem in time"
    reasons = [
        (cfg.model.get("hard_initial", False), "model.hard_initial=true (the initial value of "
                                               "a later window is a network)"),
        (cfg.data.file is not None, "data.file (observations)"),
        (pde.reference_data is not None, "a reference file (pde.reference_file)"),
        (cfg.trainer.resume is not None, "trainer.resume"),
        (distributed, "torchrun"),
        (cfg.get("trial") is not None, "a search"),
    ]
    for refused, what in reasons:
        if refused:
            return f"{key} does not work with {what} yet; use trainer.time_windows=1"
    return None


def window_config(cfg: DictConfig, t0: float, t1: float, minutes: Optional[float],
                  windows: int = 1) -> DictConfig:
    """``cfg`` for the window [t0, t1]: the problem's time interval and the window's budget
    (``windows``: what ``trainer.time_windows`` says, 1 in a window's own config)."""
    out = copy.deepcopy(cfg)
    with open_dict(out):
        if "domain" in out.pde and out.pde.domain is not None and "t" in out.pde.domain:
            out.pde.domain.t = [t0, t1]
        else:
            out.pde.t_min, out.pde.t_max = t0, t1
        out.trainer.max_minutes = minutes
        out.trainer.time_windows = windows
    return out


class InitialFromNetwork:
    """A window's initial value: the previous window's network at time ``t0``, in predict mode
    and without gradient; its time derivative too for problems second order in time."""

    def __init__(self, model: nn.Module, t0: float, time_column: int):
        self.model, self.t0, self.column = model, float(t0), time_column

    def _at_t0(self, points: torch.Tensor) -> torch.Tensor:
        p = points.detach().clone()
        p[:, self.column] = self.t0
        return p

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model(self._at_t0(points)).to(points.dtype)
        finally:
            self.model.train(was)

    def velocity(self, points: torch.Tensor) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                p = self._at_t0(points).requires_grad_(True)
                u = self.model(p)
                cols = [torch.autograd.grad(u[:, k].sum(), p)[0][:, self.column]
                        for k in range(u.shape[1])]
            return torch.stack(cols, dim=1).detach().to(points.dtype)
        finally:
            self.model.train(was)


def start_from_previous(pde: PDE, previous: nn.Module, t0: float) -> None:
    """Make ``previous`` at ``t0`` the initial condition of ``pde`` (a window's problem)."""
    source = InitialFromNetwork(previous, t0, pde.axes.dim - 1)
    second_order = pde.initial_velocity_exprs
    pde.initial_at = source
    if pde.legacy:
        pde.initial = lambda x: source(torch.cat([x, torch.zeros_like(x)], dim=1))
    if second_order:
        pde.initial_velocity_at = source.velocity


def warm_start(model: nn.Module, previous: nn.Module) -> None:
    """Copy ``previous``'s parameters (not its buffers: the input scaling is the window's own)."""
    mine = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in previous.named_parameters():
            mine[name].copy_(p)


def restrict(grid: EvalGrid, t0: float, t1: float, last: bool) -> EvalGrid:
    """The part of ``grid`` with t in [t0, t1) ([t0, t1] for the last window); time is the
    grid's last axis, the first dimension of its arrays."""
    t = grid.coords[-1]
    keep = (t >= t0) & ((t <= t1) if last else (t < t1))
    coords = list(grid.coords)
    coords[-1] = t[keep]
    ref = None if grid.reference is None else grid.reference[keep]
    mask = None if grid.mask is None else grid.mask[keep]
    first = coords[0]
    second = coords[1] if len(coords) > 1 else None
    return EvalGrid(first, second, ref, axes=grid.axes, others=tuple(coords[2:]), mask=mask)


class WindowedModel(nn.Module):
    """The piecewise network of a marching run: each point goes to the window its time is in
    ([t_k, t_k+1), the last window closed)."""

    def __init__(self, models: Sequence[nn.Module], edges: Sequence[float]):
        super().__init__()
        self.windows = nn.ModuleList(models)
        self.edges = [float(e) for e in edges]

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        t = points[:, -1]
        parts, rows = [], []
        last = len(self.windows) - 1
        for k, model in enumerate(self.windows):
            a, b = self.edges[k], self.edges[k + 1]
            inside = (t >= a) & ((t <= b) if k == last else (t < b))
            if k == 0:
                inside = inside | (t < a)
            if k == last:
                inside = inside | (t > b)
            idx = inside.nonzero().reshape(-1)
            if idx.numel():
                parts.append(model(points[idx]))
                rows.append(idx)
        out = torch.cat(parts)
        order = torch.cat(rows)
        return out[torch.argsort(order)]


def write_manifest(root: Path, edges: Sequence[float], folders: Sequence[str]) -> None:
    (root / MANIFEST).write_text(json.dumps({"edges": list(edges), "folders": list(folders)},
                                            indent=1))


def read_manifest(root: Path) -> Optional[Tuple[List[float], List[str]]]:
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return [float(e) for e in data["edges"]], [str(f) for f in data["folders"]]


def march(cfg: DictConfig, paths: RunPaths, run_window, build_pde, build_model,
          device: torch.device) -> Dict[str, object]:
    """Train the windows in turn; returns the run's metrics (see the module docstring).
    ``run_window(cfg, paths, pde, model, grid)`` trains one window as an ordinary run and
    returns its metrics (pinn.train.run)."""
    k = int(cfg.trainer.time_windows)
    started = time.perf_counter()
    full = build_pde(cfg.pde)
    grid = make_eval_grid(full, cfg.pde)
    t0, t1 = full.domain.time
    edges = window_edges(t0, t1, k)
    minutes = None if cfg.trainer.max_minutes is None else cfg.trainer.max_minutes / k
    folders = [f"window_{i}" for i in range(k)]
    paths.root.mkdir(parents=True, exist_ok=True)
    write_manifest(paths.root, edges, folders)
    models: List[nn.Module] = []
    windows: List[Dict[str, object]] = []
    previous: Optional[nn.Module] = None
    status, message = "completed", None
    for i in range(k):
        wcfg = window_config(cfg, edges[i], edges[i + 1], minutes)
        pde = build_pde(wcfg.pde)
        model = build_model(wcfg, pde).to(device)
        if previous is not None:
            start_from_previous(pde, previous, edges[i])
            warm_start(model, previous)
        metrics = run_window(wcfg, RunPaths(paths.root / folders[i]), pde, model,
                             restrict(grid, edges[i], edges[i + 1], i == k - 1))
        windows.append({"window": i, "t": [edges[i], edges[i + 1]], "folder": folders[i],
                        "status": metrics["status"],
                        **{key: v for key, v in metrics.items()
                           if key.startswith(("error/", "loss/total"))
                           or key in ("steps", "qn_iterations", "train_time_s")}})
        models.append(model)
        previous = model
        if metrics["status"] != "completed":
            status = metrics["status"]
            message = (f"window {i} (t in [{edges[i]:g}, {edges[i + 1]:g}]) ended "
                       f"{metrics['status']}: {metrics.get('message', '')}".rstrip(": "))
            if "stopped_by" in metrics:
                windows[-1]["stopped_by"] = metrics["stopped_by"]
            break
    out: Dict[str, object] = {"status": status, "time_windows": k, "windows": windows,
                              "steps": sum(int(w.get("steps", 0)) for w in windows),
                              "train_time_s": sum(float(w.get("train_time_s", 0.0))
                                                  for w in windows),
                              "qn_iterations": sum(int(w.get("qn_iterations", 0))
                                                   for w in windows)}
    if message:
        out["message"] = message
        if "stopped_by" in windows[-1]:
            out["stopped_by"] = windows[-1]["stopped_by"]
    if len(models) == k and grid.reference is not None:
        pred = predict_grid(WindowedModel(models, edges), grid)
        out.update({f"error/{key}": v for key, v in grid_errors(pred, grid, full).items()})
        out["error_by_time"] = error_by_time(pred, grid, full)
    out["wall_time_s"] = time.perf_counter() - started
    return out


def error_by_time(pred: np.ndarray, grid: EvalGrid, pde: PDE) -> List[List[float]]:
    """[t, relative L2 of the first output at that time] for each grid time (inside the
    region where the problem has one)."""
    out = []
    for j, t in enumerate(grid.coords[-1]):
        inside = Ellipsis if grid.mask is None else grid.mask[j]
        out.append([float(t), relative_l2(pred[j][..., 0][inside],
                                          grid.reference[j][..., 0][inside])])
    return out


__all__ = ["MANIFEST", "InitialFromNetwork", "WindowedModel", "march", "read_manifest",
           "restrict", "start_from_previous", "warm_start", "window_config", "window_edges",
           "windows_refusal"]
