"""``python -m pinn.evaluate run_dir=<path>``: reload a run and judge it.

Writes into the run folder: ``evaluation.json`` (relative L2 and max error per output on the
grid, residual statistics), PNG figures under ``figures/`` (prediction, reference and absolute
error over (x, t); slices at a few times), and the same figures into the run's TensorBoard.
"""
from __future__ import annotations

import json

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from pinn.api import load_run
from pinn.marching import read_manifest
from pinn.checkpoint import CheckpointError, load_checkpoint, write_json
from pinn.cli import check_command_line, quiet_closed_pipe
from pinn.config import CONFIG_DIR
from pinn.device import device_info
from pinn.evaluation import (grid_counts, grid_errors, make_eval_grid, node_errors,
                             profiles, quantity_errors, quantity_values, write_profiles,
                             predict_grid, residual_statistics)
from pinn.figures import grid_figures, headline, prediction_figure, pyplot, slices_figure
from pinn.paths import RunPaths
from pinn.pdes import build_pde


@dataclass
class EvaluateConfig:
    """``python -m pinn.evaluate``.

    Attributes:
        run_dir: the run folder to evaluate
        nx: grid points in x; null takes the run's pde.eval_nx (the grid of its metrics.json)
        nt: grid points in t; null takes the run's pde.eval_nt
        slices: times of the slice plots, as fractions of [t_min, t_max]
        tensorboard: add the figures to the run's TensorBoard
        device: where the network is evaluated: auto, cpu, cuda or cuda:N
    """

    run_dir: str = MISSING
    nx: Optional[int] = None
    nt: Optional[int] = None
    slices: List[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    tensorboard: bool = True
    device: str = "auto"


ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def evaluate_run(run_dir: Path, nx: Optional[int] = None, nt: Optional[int] = None,
                 slices=(0.0, 0.25, 0.5, 0.75, 1.0), tensorboard: bool = True,
                 device: str = "cpu") -> dict:
    """Evaluate a run folder in place, the network on ``device``; returns what
    evaluation.json holds."""
    paths = RunPaths(Path(run_dir))
    model, cfg = load_run(paths.root, device=device)
    pde = build_pde(cfg.pde)
    xt = pde.axes.names == ("x", "t")
    if xt:
        counts = {"x": nx or cfg.pde.eval_nx, "t": nt or cfg.pde.eval_nt}
    elif nx or nt:
        raise ValueError(f"nx, nt set the grid of a problem in (x, t); {pde.name} is in "
                         f"({', '.join(pde.axes.names)}): its grid is the run's pde.eval_points")
    else:
        counts = grid_counts(pde, cfg.pde)
    grid = make_eval_grid(pde, counts=counts)
    pred = predict_grid(model, grid)  # (*grid.shape, n_out)
    quantities = quantity_values(model, pde)
    write_profiles(profiles(model, pde), paths.root / "profiles", pde)
    result = {"run_dir": str(paths.root),
              "grid": {"nx": counts["x"], "nt": counts["t"]} if xt else counts,
              **device_info(next(model.parameters()).device),
              "reference": pde.reference_kind,
              **{f"error/{k}": v for k, v in (node_errors(model, pde)
                                              or grid_errors(pred, grid, pde)).items()},
              **{f"error/{k}": v for k, v in quantity_errors(quantities, pde).items()},
              **{f"quantity/{k}": v for k, v in quantities.items()},
              **residual_statistics(model, pde, grid)}
    learned = getattr(model, "pde_params", None)
    if learned is not None:  # an inverse problem: the coefficients it found
        result.update({f"params/{k}": v for k, v in learned.as_floats().items()})
        result.update({f"params/{k}/rel_error": v for k, v in learned.errors().items()})
    paths.figures.mkdir(parents=True, exist_ok=True)
    times = [pde.t_min + f * (pde.t_max - pde.t_min) for f in slices] if xt else []
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(paths.tensorboard))
    if read_manifest(paths.root) is not None:  # a marching run: its windows' steps together
        step = int(json.loads(paths.metrics.read_text()).get("steps", 0))
    else:
        step = load_checkpoint(paths.last_checkpoint).step
    figures = []
    for k, name in enumerate(pde.outputs):
        ref = None if grid.reference is None else grid.reference[..., k]
        title = headline(cfg.pde.name, step, pred[..., k], ref, name, paths.root.name)
        if xt:
            pairs = [("fields", prediction_figure(grid.x, grid.t, pred[..., k], ref, name,
                                                  title)),
                     ("slices", slices_figure(grid.x, grid.t, pred[..., k], ref, times, name,
                                              title))]
        else:  # "@t=0.5" -> "fields_t0.5"
            pairs = [("fields" + suffix.replace("@", "_").replace("=", ""), fig)
                     for suffix, fig in grid_figures(grid.axes, grid.coords, pred[..., k], ref,
                                                     name, title)]
        for kind, fig in pairs:
            png = paths.figures / f"{name}_{kind}.png"
            fig.savefig(png, dpi=110)
            figures.append(str(png.relative_to(paths.root)))
            if writer is not None:
                writer.add_figure(f"evaluation/{name}_{kind}", fig, step, close=False)
            pyplot().close(fig)
    if writer is not None:
        writer.close()
    result["figures"] = figures
    write_json(result, paths.root / "evaluation.json")
    return result


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_dir = Path(cfg.run_dir)
    try:
        if not run_dir.is_dir():
            raise ValueError(f"run_dir={cfg.run_dir!r} is not a folder")
        for key in ("nx", "nt"):
            if cfg[key] is not None and cfg[key] < 2:
                raise ValueError(f"{key}={cfg[key]} is not allowed: null or an integer >= 2")
        result = evaluate_run(run_dir, cfg.nx, cfg.nt, list(cfg.slices), cfg.tensorboard,
                              device=cfg.device)
    except (ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for k, v in result.items():
        if isinstance(v, float):
            print(f"  {k:<28} {v:.4e}")
    print(f"evaluation: {run_dir / 'evaluation.json'}; figures: {run_dir / 'figures'}")


if __name__ == "__main__":
    with quiet_closed_pipe():
        check_command_line("evaluate", EvaluateConfig)  # one line per mistake, before anything is written
        main()
