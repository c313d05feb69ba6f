"""Prediction on a dense (x, t) grid and errors against the problem's reference."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from pinn.derivatives import compute_derivatives
from pinn.pdes.problem import PDE
from pinn.pdes.unknowns import learned_values
from pinn.reference.metrics import max_abs, relative_l2


@dataclass
class EvalGrid:
    """x (Nx,), t (Nt,) and the reference (Nt, Nx, n_out), or None when the problem has none."""

    x: np.ndarray
    t: np.ndarray
    reference: Optional[np.ndarray]


def make_eval_grid(pde: PDE, nx: int, nt: int) -> EvalGrid:
    """The evaluation grid of a problem; the reference is computed once, here."""
    x = np.linspace(pde.x_min, pde.x_max, nx)
    t = np.linspace(pde.t_min, pde.t_max, nt)
    return EvalGrid(x, t, pde.reference(x, t))


@torch.no_grad()
def predict_grid(model: nn.Module, grid: EvalGrid, chunk: int = 65536) -> np.ndarray:
    """The network in predict mode (``eval()``, frozen statistics) on the grid: (Nt, Nx, n_out)."""
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        X, T = np.meshgrid(grid.x, grid.t)  # (Nt, Nx)
        xt = torch.as_tensor(np.stack([X.ravel(), T.ravel()], axis=1), dtype=p.dtype,
                             device=p.device)
        out = torch.cat([model(xt[i : i + chunk]) for i in range(0, xt.shape[0], chunk)])
    finally:
        model.train(was_training)
    return out.double().cpu().numpy().reshape(len(grid.t), len(grid.x), -1)


def grid_errors(pred: np.ndarray, grid: EvalGrid, pde: PDE) -> Dict[str, float]:
    """Relative L2 and max-abs error per output, keyed ``l2_rel/<name>``, ``max_abs/<name>``,
    then the same for each of the problem's ``derived`` quantities (e.g. NLS's |h|)."""
    if grid.reference is None:
        return {}
    errs = {}
    for k, name in enumerate(pde.outputs):
        errs[f"l2_rel/{name}"] = relative_l2(pred[..., k], grid.reference[..., k])
        errs[f"max_abs/{name}"] = max_abs(pred[..., k], grid.reference[..., k])
    if pde.derived:
        X, T = np.meshgrid(grid.x, grid.t)  # (Nt, Nx)
        got = pde.derived_values(pred, X, T)
        want = pde.derived_values(grid.reference, X, T)
        for name in pde.derived:
            errs[f"l2_rel/{name}"] = relative_l2(got[name], want[name])
            errs[f"max_abs/{name}"] = max_abs(got[name], want[name])
    return errs


def residual_statistics(model: nn.Module, pde: PDE, grid: EvalGrid,
                        chunk: int = 8192) -> Dict[str, float]:
    """Residual of the predict-mode network on the grid: mean |r|, RMS and max |r| per equation
    (``residual/<i>/...``), derivatives by autograd in chunks."""
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        X, T = np.meshgrid(grid.x, grid.t)
        x = torch.as_tensor(X.reshape(-1, 1), dtype=p.dtype, device=p.device)
        t = torch.as_tensor(T.reshape(-1, 1), dtype=p.dtype, device=p.device)
        parts = []
        for i in range(0, x.shape[0], chunk):
            d = compute_derivatives(model, x[i : i + chunk], t[i : i + chunk], pde.derivatives,
                                    create_graph=False)
            parts.append(pde.residual(x[i : i + chunk], t[i : i + chunk], d,
                                      learned_values(model)).detach())
        r = torch.cat(parts).double().cpu().numpy()  # (Nt * Nx, n_equations)
    finally:
        model.train(was_training)
    out = {}
    for k in range(r.shape[1]):
        a = np.abs(r[:, k])
        out[f"residual/{k}/mean_abs"] = float(a.mean())
        out[f"residual/{k}/rms"] = float(np.sqrt((a**2).mean()))
        out[f"residual/{k}/max_abs"] = float(a.max())
    return out
