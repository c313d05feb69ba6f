"""Unknown coefficients of a problem, learned with the network (inverse problems).

``pde.unknown`` marks parameters of the residual as unknown, each with a starting value and a
parametrization of the trained number theta:

- ``transform: linear``: value = scale * theta (``scale`` brings a coefficient of any magnitude,
  1e8 or 1e-3, to a theta of order one, which is what Adam's step size assumes);
- ``transform: log``: value = scale * exp(theta): always positive, and steps are relative.

The thetas live in :class:`LearnedParameters`, a module registered on the network as
``model.pde_params``: every optimizer stage trains them with the network's weights, checkpoints
and ``pinn.load_run`` carry them, and an exact resume restores them with their optimizer state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import torch
from torch import nn

TRANSFORMS = ("linear", "log")


@dataclass(frozen=True)
class Unknown:
    """One unknown coefficient: its name, starting value, parametrization and (when the config
    gives one in ``pde.params``) its true value."""

    name: str
    init: float
    transform: str = "linear"
    scale: float = 1.0
    true: Optional[float] = None

    def theta0(self) -> float:
        return self.init / self.scale if self.transform == "linear" \
            else math.log(self.init / self.scale)


def parse_unknowns(node: Optional[Mapping], params: Mapping[str, float]) -> Dict[str, Unknown]:
    """The ``pde.unknown`` config node as :class:`Unknown` entries.

    Args:
        node: ``{name: {init, transform, scale}}`` (``init`` may be given alone: ``name: 0.5``).
        params: the configured parameter values; a value there is the true one.

    Raises:
        ValueError: one line naming the key and what is allowed.
    """
    out: Dict[str, Unknown] = {}
    for name, spec in (node or {}).items():
        key = f"pde.unknown.{name}"
        if not str(name).isidentifier() or name in ("x", "t"):
            raise ValueError(f"{key}: not allowed as a parameter name")
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"init": spec}
        if not isinstance(spec, Mapping):
            raise ValueError(f"{key}={spec!r} is not allowed: a starting value or "
                             "{init: <number>, transform: linear|log, scale: <number>}")
        extra = set(spec) - {"init", "transform", "scale"}
        if extra:
            raise ValueError(f"{key}.{sorted(extra)[0]} is not allowed: the keys are init, "
                             "transform, scale")
        if spec.get("init") is None:
            raise ValueError(f"{key}.init is missing: give the starting value")
        try:
            init, scale = float(spec["init"]), float(spec.get("scale", 1.0))
        except (TypeError, ValueError):
            raise ValueError(f"{key}: init and scale must be numbers") from None
        transform = str(getattr(spec.get("transform", "linear"), "name",
                                spec.get("transform", "linear")))
        if transform not in TRANSFORMS:
            raise ValueError(f"{key}.transform={transform} is not allowed: one of "
                             f"{', '.join(TRANSFORMS)}")
        if not (math.isfinite(init) and math.isfinite(scale)) or scale == 0:
            raise ValueError(f"{key}: init and scale must be finite, scale non-zero")
        if transform == "log" and init / scale <= 0:
            raise ValueError(f"{key}.init={init:g} is not allowed with transform=log: init / "
                             "scale must be > 0")
        true = params.get(name)
        out[str(name)] = Unknown(str(name), init, transform, scale,
                                 None if true is None else float(true))
    return out


class LearnedParameters(nn.Module):
    """The thetas of the unknown coefficients; :meth:`values` maps them to the coefficients."""

    def __init__(self, unknowns: Mapping[str, Unknown]):
        super().__init__()
        self.unknowns = dict(unknowns)
        self.theta = nn.ParameterDict({
            name: nn.Parameter(torch.tensor(u.theta0(), dtype=torch.float64))
            for name, u in self.unknowns.items()})

    def values(self) -> Dict[str, torch.Tensor]:
        """name -> the coefficient as a 0-dim tensor (differentiable in theta)."""
        out = {}
        for name, u in self.unknowns.items():
            theta = self.theta[name]
            out[name] = u.scale * (theta if u.transform == "linear" else torch.exp(theta))
        return out

    def as_floats(self) -> Dict[str, float]:
        """The coefficients as numbers, in one transfer from the device (called at logging steps)."""
        with torch.no_grad():
            values = self.values()
            return dict(zip(values, torch.stack(list(values.values())).tolist()))

    def errors(self) -> Dict[str, float]:
        """Relative error of each coefficient whose true value the config gives."""
        got = self.as_floats()
        return {k: abs(got[k] - u.true) / abs(u.true) if u.true else abs(got[k])
                for k, u in self.unknowns.items() if u.true is not None}


def learned_values(model: nn.Module) -> Optional[Dict[str, torch.Tensor]]:
    """The current coefficients of ``model.pde_params``, or None for a forward problem."""
    learned = getattr(model, "pde_params", None)
    return None if learned is None else learned.values()


__all__ = ["Unknown", "LearnedParameters", "parse_unknowns", "learned_values", "TRANSFORMS"]
