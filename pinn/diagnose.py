"""``python -m pinn.diagnose``: how far apart are forward (training) and predict (inference)?

For each way of obtaining BN statistics (one pass with momentum 0.1, 500 passes, a cumulative
average, exact calibration) and each BN mode, the study compares the forward path (``train()``,
in that mode) with the predict path (``eval()``, running statistics) on one point set: relative
L2 difference of U, Ux, Ut, Uxx, Utt and the cosine between the parameter gradients of
L = sum over fields of mean(field^2). Rows for ``torch.nn.BatchNorm1d`` with the same weights
show what plain PyTorch gives. The table is printed; ``diagnose.json`` holds the rows.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import nn

from pinn.checkpoint import write_json
from pinn.cli import check_command_line, quiet_closed_pipe
from pinn.config import CONFIG_DIR, BNConfig, ModelConfig, Precision, choice
from pinn.derivatives import DERIVATIVE_KEYS, compute_derivatives
from pinn.device import device_info, resolve_device
from pinn.divergence import rel_l2
from pinn.nn import DTYPES, MLP, BatchNorm, calibrate_bn, set_bn_mode
from pinn.nn.norm import bn_layers, running_statistics_fixed
from pinn.paths import register_run_dir_resolver, remove_run_dir


def stats_methods(passes: int) -> List[tuple]:
    """(label, momentum, number of passes or None for exact calibration), in table order."""
    return [("1 pass, momentum 0.1", 0.1, 1),
            (f"{passes} passes, momentum 0.1", 0.1, passes),
            (f"cumulative, {passes} passes", None, passes),
            ("exact calibration", 0.1, None)]


@dataclass
class DiagnoseConfig:
    """``python -m pinn.diagnose``.

    Attributes:
        precision: float32 or float64
        seed: network initialization and the point set
        n_out: outputs of the network
        n_points: points, uniform in [x_min, x_max] x [t_min, t_max]
        passes: training-mode passes of the multi-pass statistics rows
        x_min: left end of the point set in x
        x_max: right end in x
        t_min: lower end in t
        t_max: upper end in t
        torch_reference: add rows for torch.nn.BatchNorm1d with the same weights
        device: auto, cpu, cuda or cuda:N
        num_threads: torch intra-op threads, 1 by default (as trainer.num_threads: 2 threads
            take 47 s instead of 69 s on an idle 2-core machine, 161 s beside a busy process);
            null leaves torch's default
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    bn: BNConfig = field(default_factory=BNConfig)
    precision: Precision = Precision.float64
    seed: int = 0
    n_out: int = 4
    n_points: int = 1000
    passes: int = 500
    x_min: float = 0.0
    x_max: float = 2 * math.pi
    t_min: float = 0.0
    t_max: float = 2 * math.pi
    torch_reference: bool = True
    device: str = "auto"
    num_threads: Optional[int] = 1


ConfigStore.instance().store(name="diagnose_schema", node=DiagnoseConfig)
register_run_dir_resolver()


def _build(cfg: DictConfig, momentum: Optional[float],
           device: torch.device = torch.device("cpu")) -> MLP:
    torch.manual_seed(cfg.seed)
    model = MLP(n_out=cfg.n_out, depth=cfg.model.depth, width=cfg.model.width,
                activation=choice(cfg.model.activation), norm=choice(cfg.model.norm),
                lower=(cfg.x_min, cfg.t_min), upper=(cfg.x_max, cfg.t_max), bn_eps=cfg.bn.eps,
                bn_momentum=momentum, bn_mode="detached")
    return model.to(device=device, dtype=DTYPES[choice(cfg.precision)])


def gather_statistics(model: nn.Module, xt: torch.Tensor, passes: Optional[int]) -> None:
    """Fill the running statistics of ``model``: ``passes`` training-mode forward passes over
    ``xt``, or an exact calibration when ``passes`` is None."""
    with torch.no_grad():
        if passes is None:
            calibrate_bn(model, xt[:, :1], xt[:, 1:])
            return
        model.train()
        for _ in range(passes):
            model(xt)


def _field_loss(d: Dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(d[k].square().mean() for k in DERIVATIVE_KEYS)


def _path(model: nn.Module, x, t, train: bool):
    """U..Utt (coupled through batch statistics where the mode couples them) and the
    parameter gradient of the field loss."""
    model.train(train)
    d = compute_derivatives(model, x, t, DERIVATIVE_KEYS, create_graph=True)
    params = [p for p in model.parameters()]
    g = torch.autograd.grad(_field_loss(d), params, allow_unused=True, materialize_grads=True)
    return {k: v.detach() for k, v in d.items()}, torch.cat([v.reshape(-1) for v in g])


def compare(fwd, g_fwd, pred, g_pred) -> Dict[str, float]:
    row = {k: rel_l2(fwd[k], pred[k]) for k in DERIVATIVE_KEYS}
    row["grad_cosine"] = (g_fwd @ g_pred).item() / (g_fwd.norm() * g_pred.norm()).item()
    return row


def to_torch_batchnorm(model: MLP, momentum: Optional[float]) -> nn.Module:
    """The same network with ``torch.nn.BatchNorm1d`` (same weights, fresh statistics)."""
    twin = copy.deepcopy(model)
    for block in twin.hidden:
        for i, layer in enumerate(block):
            if isinstance(layer, BatchNorm):
                bn = nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=momentum)
                bn = bn.to(device=layer.weight.device, dtype=layer.weight.dtype)
                with torch.no_grad():
                    bn.weight.copy_(layer.weight)
                    bn.bias.copy_(layer.bias)
                block[i] = bn
    return twin


def study(cfg: DictConfig, log: Callable[[str], None] = lambda s: None,
          device: Optional[torch.device] = None) -> List[dict]:
    """All rows of the study (on ``device``, default: as ``cfg.device`` resolves); see the
    module docstring. The points are drawn on the CPU, so every device studies the same set."""
    device = resolve_device(cfg.device) if device is None else device
    dtype = DTYPES[choice(cfg.precision)]
    g = torch.Generator().manual_seed(cfg.seed + 1)
    u = torch.rand(cfg.n_points, 2, generator=g, dtype=torch.float64).to(device=device,
                                                                          dtype=dtype)
    x = cfg.x_min + (cfg.x_max - cfg.x_min) * u[:, :1]
    t = cfg.t_min + (cfg.t_max - cfg.t_min) * u[:, 1:]
    xt = torch.cat([x, t], 1)
    rows = []
    for stats, momentum, passes in stats_methods(cfg.passes):
        for mode in ("batch", "detached", "frozen"):
            model = _build(cfg, momentum, device)
            if not bn_layers(model):
                raise ValueError("model.norm=none: the study needs model.norm=batch")
            gather_statistics(model, xt, passes)
            set_bn_mode(model, mode)
            with running_statistics_fixed(model):
                fwd, g_fwd = _path(model, x, t, train=True)
                pred, g_pred = _path(model, x, t, train=False)
            rows.append({"mode": mode, "stats": stats, **compare(fwd, g_fwd, pred, g_pred)})
            log(format_row(rows[-1]))
        if cfg.torch_reference and passes is not None:
            twin = to_torch_batchnorm(_build(cfg, momentum, device), momentum)
            gather_statistics(twin, xt, passes)
            # eval() first: torch's train() forward updates the running statistics again.
            pred, g_pred = _path(twin, x, t, train=False)
            fwd, g_fwd = _path(twin, x, t, train=True)
            rows.append({"mode": "torch BatchNorm1d", "stats": stats,
                         **compare(fwd, g_fwd, pred, g_pred)})
            log(format_row(rows[-1]))
    return rows


HEADER = f"{'mode':<18} {'statistics':<26} " + " ".join(
    f"{k:>11}" for k in DERIVATIVE_KEYS) + f" {'grad cos':>9}"


def format_row(r: dict) -> str:
    cells = " ".join(f"{100 * r[k]:>10.4g}%" for k in DERIVATIVE_KEYS)
    return f"{r['mode']:<18} {r['stats']:<26} {cells} {r['grad_cosine']:>9.6f}"


def format_table(rows: List[dict]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *map(format_row, rows)])


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="diagnose")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if choice(cfg.model.norm) != "batch":
            raise ValueError(f"model.norm={choice(cfg.model.norm)!r} is not allowed here: "
                             "batch (the study compares BN modes)")
        if cfg.n_points < 2 or cfg.passes < 1:
            raise ValueError("n_points >= 2 and passes >= 1 are required")
        if cfg.num_threads is not None and cfg.num_threads < 1:
            raise ValueError(f"num_threads={cfg.num_threads} is not allowed: null or an "
                             "integer >= 1")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        device = resolve_device(cfg.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        remove_run_dir(out_dir)
        sys.exit(2)
    print(f"device: {device_info(device)['device']} ({device_info(device)['device_name']})",
          flush=True)
    print("forward (train) vs predict (eval): relative L2 difference, and parameter-gradient "
          "cosine; each row as it is computed\n" + HEADER + "\n" + "-" * len(HEADER), flush=True)
    rows = study(cfg, log=lambda s: print(s, flush=True), device=device)
    write_json(rows, out_dir / "diagnose.json")
    print(f"rows written to {out_dir / 'diagnose.json'}")


if __name__ == "__main__":
    with quiet_closed_pipe():
        check_command_line("diagnose", DiagnoseConfig)  # one line per mistake, before anything is written
        main()
