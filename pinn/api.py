"""Python entry points for notebooks and scripts."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import torch
from omegaconf import DictConfig
from torch import nn

from pinn.checkpoint import load_checkpoint
from pinn.config import load_saved_config
from pinn.device import resolve_device
from pinn.marching import WindowedModel, read_manifest, window_config
from pinn.nn import build_model, set_bn_mode
from pinn.paths import RunPaths
from pinn.pdes import build_pde


def load_run(run_dir: Union[str, Path], device: Union[str, torch.device] = "cpu"
             ) -> Tuple[nn.Module, DictConfig]:
    """Reload a trained run, on any device (wherever it was trained).

    Args:
        run_dir: a run folder written by ``python -m pinn.train``.
        device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto`` (see :mod:`pinn.device`).

    Returns:
        (model, cfg): the network in predict (inference) mode on ``device``, called as
        ``model(p)`` on an (N, d) tensor whose columns are the problem's axes ((x, t) for a
        problem written the 1-D way) in the run's precision on that device, and the run's
        config.

    Raises:
        DeviceError: ``device`` is not valid or not present.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device, key="device")
    windows = read_manifest(Path(run_dir))
    if windows is not None:  # a marching run: the piecewise network of its windows
        edges, folders = windows
        loaded = [load_run(Path(run_dir) / f, dev) for f in folders]
        first = loaded[0][1]  # the run's config with the whole interval and its windows
        cfg = window_config(first, edges[0], edges[-1], first.trainer.max_minutes,
                            windows=len(folders))
        return WindowedModel([m for m, _ in loaded], edges).eval(), cfg
    paths = RunPaths(Path(run_dir))
    ckpt = load_checkpoint(paths.last_checkpoint)
    # The checkpoint carries the resolved config; merging onto the schema restores its types.
    cfg = load_saved_config(ckpt.config_yaml)
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde).to(dev)
    model.load_state_dict(ckpt.model)  # includes BN running statistics and calibration flags
    if ckpt.extra.get("bn_mode"):
        set_bn_mode(model, ckpt.extra["bn_mode"])
    model.eval()
    return model, cfg
