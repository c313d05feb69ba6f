"""``python -m pinn.diagnose``: how far apart are forward (training) and predict (inference)?

For each way of obtaining BN statistics (one pass with momentum 0.1, 500 passes, a cumulative
average, exact calibration) and each BN mode, the study compares the forward path (``train()``,
in that mode) with the predict path (``eval()``, running statistics) on one point set: relative
L2 difference of U, Ux, Ut, Uxx, Utt and the cosine between the parameter gradients of
L = sum over fields of mean(field^2). Rows for ``torch.nn.BatchNorm1d`` with the same weights
show what plain PyTorch gives. The table is printed; ``diagnose.json`` holds the rows.

``problem=<name>`` studies the network of a problem of any dimension instead (``problem=
kovasznay``: 2 -> ... -> 3 on (x, y)): its axes and outputs, points uniform in its domain, and
the fields its residual reads (``u``, ``u_x``, ``v_yy``, ``u_xxx``, ...), computed by the
reverse-mode reference engine.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import nn

from pinn.checkpoint import write_json
from pinn.cli import check_command_line, quiet_closed_pipe
from pinn.config import CONFIG_DIR, BNConfig, ModelConfig, Precision, choice
from pinn.coords import key_of
from pinn.derivatives import DERIVATIVE_KEYS, compute_derivatives
from pinn.derivatives_nd import nd_derivatives
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
        problem: study the network of this problem (a name of configs/pde/: its axes, domain,
            outputs and the fields its residual reads) instead of the (x, t) network above;
            n_out and x_min..t_max are then the problem's
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
    problem: Optional[str] = None
    num_threads: Optional[int] = 1


ConfigStore.instance().store(name="diagnose_schema", node=DiagnoseConfig)
register_run_dir_resolver()


@dataclass
class Setting:
    """What the study differentiates: the network's domain box and outputs, and the fields.

    ``fields(model, points)`` returns name -> tensor, differentiable in the parameters, for
    the names of ``names`` in order."""

    lower: Tuple[float, ...]
    upper: Tuple[float, ...]
    n_out: int
    names: Tuple[str, ...]
    fields: Callable[[nn.Module, torch.Tensor], Dict[str, torch.Tensor]]


def _xt_fields(model: nn.Module, points: torch.Tensor) -> Dict[str, torch.Tensor]:
    return compute_derivatives(model, points[:, :1], points[:, 1:], DERIVATIVE_KEYS,
                               create_graph=True)


def setting_of(cfg: DictConfig) -> Setting:
    """The (x, t) network of ``cfg`` or, with ``cfg.problem``, the problem's.

    Raises:
        ValueError: an unknown problem (one line naming the key and the choices).
    """
    if not cfg.get("problem"):
        return Setting((cfg.x_min, cfg.t_min), (cfg.x_max, cfg.t_max), cfg.n_out,
                       tuple(DERIVATIVE_KEYS), _xt_fields)
    from pinn.pdes import build_pde

    pde = build_pde(problem_config(str(cfg.problem)))
    wanted = sorted(pde.wanted, key=lambda d: (sum(d.alpha), d.output, d.alpha[::-1]))
    names = tuple(key_of(d, pde.outputs, pde.axes) for d in wanted)

    def fields(model: nn.Module, points: torch.Tensor) -> Dict[str, torch.Tensor]:
        d = nd_derivatives(model, points, wanted, create_graph=True)
        return {name: d[w] for name, w in zip(names, wanted)}

    return Setting(tuple(pde.domain.lower), tuple(pde.domain.upper), pde.n_out, names, fields)


def problem_config(name: str) -> DictConfig:
    """The ``pde`` node of the training config with ``pde=<name>``, composed by Hydra.

    Raises:
        ValueError: an unknown problem: one line naming ``problem`` and the choices.
    """
    from hydra.core.global_hydra import GlobalHydra

    from pinn.cli import CommandLineError, check_overrides
    from pinn.config import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside python -m pinn.diagnose: checked
        from hydra import compose              # by check_problem before Hydra started

        return compose("train", overrides=[f"pde={name}"]).pde
    try:
        return check_overrides("train", [f"pde={name}"]).pde
    except CommandLineError as e:
        raise ValueError(str(e).replace("pde=", "problem=", 1)) from None


def check_problem(argv: Sequence[str]) -> None:
    """Refuse an unknown ``problem=`` of the command line in one line, exit 2, before Hydra
    makes a run folder."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") == "problem" and value not in ("", "null"):
            try:
                problem_config(value)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(2)


def _build(cfg: DictConfig, momentum: Optional[float],
           device: torch.device = torch.device("cpu"), setting: Optional[Setting] = None) -> MLP:
    setting = setting_of(cfg) if setting is None else setting
    torch.manual_seed(cfg.seed)
    model = MLP(n_out=setting.n_out, depth=cfg.model.depth, width=cfg.model.width,
                activation=choice(cfg.model.activation), norm=choice(cfg.model.norm),
                lower=setting.lower, upper=setting.upper, bn_eps=cfg.bn.eps,
                bn_momentum=momentum, bn_mode="detached")
    return model.to(device=device, dtype=DTYPES[choice(cfg.precision)])


def gather_statistics(model: nn.Module, points: torch.Tensor, passes: Optional[int]) -> None:
    """Fill the running statistics of ``model``: ``passes`` training-mode forward passes over
    ``points`` (N, d), or an exact calibration when ``passes`` is None."""
    with torch.no_grad():
        if passes is None:
            calibrate_bn(model, points)
            return
        model.train()
        for _ in range(passes):
            model(points)


def _path(model: nn.Module, points: torch.Tensor, train: bool, setting: Setting):
    """The fields (coupled through batch statistics where the mode couples them) and the
    parameter gradient of L = sum over fields of mean(field^2)."""
    model.train(train)
    d = setting.fields(model, points)
    params = [p for p in model.parameters()]
    loss = sum(d[k].square().mean() for k in setting.names)
    g = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    return {k: v.detach() for k, v in d.items()}, torch.cat([v.reshape(-1) for v in g])


def compare(fwd, g_fwd, pred, g_pred) -> Dict[str, float]:
    row = {k: rel_l2(fwd[k], pred[k]) for k in fwd}
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
    setting = setting_of(cfg)
    dtype = DTYPES[choice(cfg.precision)]
    g = torch.Generator().manual_seed(cfg.seed + 1)
    u = torch.rand(cfg.n_points, len(setting.lower), generator=g,
                   dtype=torch.float64).to(device=device, dtype=dtype)
    points = torch.cat([lo + (hi - lo) * u[:, i : i + 1]
                        for i, (lo, hi) in enumerate(zip(setting.lower, setting.upper))], 1)
    rows = []
    for stats, momentum, passes in stats_methods(cfg.passes):
        for mode in ("batch", "detached", "frozen"):
            model = _build(cfg, momentum, device, setting)
            if not bn_layers(model):
                raise ValueError("model.norm=none: the study needs model.norm=batch")
            gather_statistics(model, points, passes)
            set_bn_mode(model, mode)
            with running_statistics_fixed(model):
                fwd, g_fwd = _path(model, points, True, setting)
                pred, g_pred = _path(model, points, False, setting)
            rows.append({"mode": mode, "stats": stats, **compare(fwd, g_fwd, pred, g_pred)})
            log(format_row(rows[-1]))
        if cfg.torch_reference and passes is not None:
            twin = to_torch_batchnorm(_build(cfg, momentum, device, setting), momentum)
            gather_statistics(twin, points, passes)
            # eval() first: torch's train() forward updates the running statistics again.
            pred, g_pred = _path(twin, points, False, setting)
            fwd, g_fwd = _path(twin, points, True, setting)
            rows.append({"mode": "torch BatchNorm1d", "stats": stats,
                         **compare(fwd, g_fwd, pred, g_pred)})
            log(format_row(rows[-1]))
    return rows


def header(names: Sequence[str] = DERIVATIVE_KEYS) -> str:
    return (f"{'mode':<18} {'statistics':<26} " + " ".join(f"{k:>11}" for k in names)
            + f" {'grad cos':>9}")


HEADER = header()


def _fields_of(r: dict) -> List[str]:
    return [k for k in r if k not in ("mode", "stats", "grad_cosine")]


def format_row(r: dict) -> str:
    cells = " ".join(f"{100 * r[k]:>10.4g}%" for k in _fields_of(r))
    return f"{r['mode']:<18} {r['stats']:<26} {cells} {r['grad_cosine']:>9.6f}"


def format_table(rows: List[dict]) -> str:
    top = header(_fields_of(rows[0])) if rows else HEADER
    return "\n".join([top, "-" * len(top), *map(format_row, rows)])


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
        names = setting_of(cfg).names
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        remove_run_dir(out_dir)
        sys.exit(2)
    print(f"device: {device_info(device)['device']} ({device_info(device)['device_name']})",
          flush=True)
    top = header(names)
    what = f" of {cfg.problem}'s network" if cfg.get("problem") else ""
    print(f"forward (train) vs predict (eval){what}: relative L2 difference, and "
          "parameter-gradient cosine; each row as it is computed\n" + top + "\n"
          + "-" * len(top), flush=True)
    rows = study(cfg, log=lambda s: print(s, flush=True), device=device)
    write_json(rows, out_dir / "diagnose.json")
    print(f"rows written to {out_dir / 'diagnose.json'}")


if __name__ == "__main__":
    with quiet_closed_pipe():
        check_command_line("diagnose", DiagnoseConfig)  # one line per mistake, before anything is written
        check_problem(sys.argv[1:])
        main()
