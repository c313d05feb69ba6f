"""Run options checked against the problem they are used with: what a problem in more than
(x, t), a steady one or a system cannot take (yet), each refused in one line before training."""
from __future__ import annotations

from typing import Any, Mapping

from pinn.pdes.problem import PDE


def check_run_options(cfg: Mapping[str, Any], pde: PDE) -> None:
    """Refuse options that ``pde`` cannot take.

    Raises:
        ValueError: one line naming the key, the problem and what to do instead.
    """
    where = f"{pde.name} is in ({', '.join(pde.axes.names)})"
    loss = cfg["loss"]
    if loss.get("causal"):
        if not pde.axes.time:
            raise ValueError(f"loss.causal=true weights the residual in time; {where}, a "
                             "steady problem: leave it off")
    named = {f"res_{e}" for e in pde.equations or []}
    for key in (loss.get("weights") or {}):
        if str(key).startswith("res_") and str(key) not in named:
            allowed = ", ".join(sorted(named)) or "none: the residual has no named equations"
            raise ValueError(f"loss.weights.{key}: not a term of {pde.name}; the equations' "
                             f"terms are {allowed}")


__all__ = ["check_run_options"]
