"""A problem defined in config: residual, initial and boundary conditions as expressions.

Everything a problem needs is in its YAML file (``configs/pde/<name>.yaml``): the outputs, the
domain, named parameters, the residual (one expression per equation), the initial value (and
initial velocity for second order in time), the boundary conditions, and a closed-form solution
or the name of a reference solver. The expressions are parsed once, here, by the safe parser of
:mod:`pinn.expressions`; the derivatives they name are exactly the ones computed.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from pinn.expressions import Expression, ExpressionError, constant, parse
from pinn.pdes.unknowns import parse_unknowns

BOUNDARY_KINDS = ("dirichlet", "neumann", "periodic")
# Derivative name suffix in expressions -> key in pinn.derivatives.
SUFFIXES = {"": "U", "_x": "Ux", "_t": "Ut", "_xx": "Uxx", "_tt": "Utt"}


def _as_list(value: Any) -> List[str]:
    """Expression source(s) of a config value; line breaks (multi-line YAML) become spaces."""
    if value is None:
        return []
    values = [value] if isinstance(value, (str, int, float)) else list(value)
    return [" ".join(str(v).split()) for v in values]


class PDE:
    """A problem on x in [x_min, x_max], t in [t_min, t_max], built from a ``pde`` config node.

    Attributes:
        outputs: output names, e.g. ``("u",)`` or ``("u", "v")``.
        derivatives: keys of :data:`pinn.derivatives.DERIVATIVE_KEYS` the residual reads.
        params: parameter values (floats), constants already folded (``0.01/pi``).
    """

    def __init__(self, cfg: Mapping[str, Any]):
        self.name = str(cfg["name"])
        self.outputs = tuple(str(o) for o in cfg.get("outputs", ["u"]))
        if not self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise ValueError(f"pde.outputs={list(self.outputs)} is not allowed: distinct names")
        for o in self.outputs:
            if not o.isidentifier() or o in ("x", "t"):
                raise ValueError(f"pde.outputs: {o!r} is not allowed: identifiers other than x, t")
        self.x_min, self.x_max = float(cfg["x_min"]), float(cfg["x_max"])
        self.t_min, self.t_max = float(cfg["t_min"]), float(cfg["t_max"])
        self.params: Dict[str, float] = {}
        for k, v in (cfg.get("params") or {}).items():
            if not str(k).isidentifier() or k in ("x", "t") or k in self.outputs:
                raise ValueError(f"pde.params.{k}: not allowed as a parameter name")
            # Earlier parameters may be used in later ones (``c2: c**2``).
            self.params[str(k)] = constant(v, key=f"pde.params.{k}", names=dict(self.params))
        self._param_sources = {str(k): str(v) for k, v in (cfg.get("params") or {}).items()}
        # Unknown coefficients (inverse problems): learned with the network; a value in params
        # is the true one (the reference and the reported error use it).
        self.unknown = parse_unknowns(cfg.get("unknown"), self.params)
        p = set(self.params)
        # Field name in expressions (u, u_x, v_tt, ...) -> (output column, derivative key).
        self._fields = {f"{o}{s}": (k, key) for k, o in enumerate(self.outputs)
                        for s, key in SUFFIXES.items()}
        self.residuals = self._parse_list(cfg.get("residual"),
                                          {"x", "t"} | p | set(self.unknown) | set(self._fields),
                                          "pde.residual", required=True)
        self.derivatives = frozenset({"U"} | {self._fields[n][1] for e in self.residuals
                                              for n in e.names if n in self._fields})
        self.initial_exprs = self._per_output(cfg.get("initial"), {"x"} | p, "pde.initial",
                                              required=True)
        self.initial_velocity_exprs = self._per_output(cfg.get("initial_velocity"), {"x"} | p,
                                                       "pde.initial_velocity")
        bc = cfg.get("boundary") or {}
        self.boundary_kind = str(getattr(bc.get("kind", "dirichlet"), "value",
                                         bc.get("kind", "dirichlet")))
        if self.boundary_kind not in BOUNDARY_KINDS:
            raise ValueError(f"pde.boundary.kind={self.boundary_kind!r} is not allowed: one of "
                             f"{', '.join(BOUNDARY_KINDS)}")
        self.boundary_exprs = {}
        if self.boundary_kind != "periodic":
            for side in ("left", "right"):
                self.boundary_exprs[side] = self._per_output(
                    bc.get(side, "0"), {"t"} | p, f"pde.boundary.{side}", required=True)
        self.exact_exprs = self._per_output(cfg.get("exact"), {"x", "t"} | p, "pde.exact")
        self.derived: Dict[str, Expression] = {}
        for k, v in (cfg.get("derived") or {}).items():
            if not str(k).isidentifier() or k in self.outputs:
                raise ValueError(f"pde.derived.{k}: not allowed as a name (an identifier "
                                 f"other than the outputs {', '.join(self.outputs)})")
            self.derived[str(k)] = parse(" ".join(str(v).split()),
                                         {"x", "t"} | p | set(self.outputs),
                                         key=f"pde.derived.{k}")
        self._check_unknowns()
        self.reference_name: Optional[str] = cfg.get("reference")
        if self.reference_name is not None:
            from pinn.reference.solvers import check_solver

            check_solver(self)

    def _check_unknowns(self) -> None:
        """An unknown must be a coefficient of the residual, not of the initial or boundary
        data (the closed form and the reference use its true value, from pde.params)."""
        in_residual = {n for e in self.residuals for n in e.names}
        elsewhere = {"pde.initial": self.initial_exprs,
                     "pde.initial_velocity": self.initial_velocity_exprs,
                     "pde.boundary": [e for v in self.boundary_exprs.values() for e in v]}
        for name in self.unknown:
            if name not in in_residual:
                raise ValueError(f"pde.unknown.{name}: {name} does not appear in pde.residual; "
                                 "only coefficients of the residual can be learned")
            for key, exprs in elsewhere.items():
                if any(name in e.names for e in exprs):
                    raise ValueError(f"pde.unknown.{name}: {name} appears in {key}; only "
                                     "coefficients of the residual can be learned")
            folded = [k for k, v in self._param_sources.items()
                      if k != name and re.search(rf"\b{name}\b", v)]
            if folded:
                raise ValueError(f"pde.unknown.{name}: pde.params.{folded[0]} is computed from "
                                 f"{name} once, at start-up; write {name} in the residual "
                                 "instead")

    # -- parsing helpers ----------------------------------------------------------------
    @staticmethod
    def _parse_list(value, names, key, required=False) -> List[Expression]:
        sources = _as_list(value)
        if required and not sources:
            raise ValueError(f"{key} is missing: give an expression (or a list of them)")
        return [parse(s, names, key=f"{key}[{i}]" if len(sources) > 1 else key)
                for i, s in enumerate(sources)]

    def _per_output(self, value, names, key, required=False) -> List[Expression]:
        exprs = self._parse_list(value, names, key, required)
        if exprs and len(exprs) != len(self.outputs):
            raise ValueError(f"{key} has {len(exprs)} expression(s): one per output "
                             f"({', '.join(self.outputs)}) is required")
        return exprs

    # -- evaluation ---------------------------------------------------------------------
    @property
    def n_out(self) -> int:
        return len(self.outputs)

    @property
    def has_exact(self) -> bool:
        return bool(self.exact_exprs)

    def _eval(self, exprs: Sequence[Expression], like: torch.Tensor, **env) -> torch.Tensor:
        """Evaluate expressions column by column: (N, len(exprs)), dtype and N of ``like`` (N, 1).
        A constant expression ("0") is broadcast."""
        cols = []
        for e in exprs:
            v = e({**self.params, **env})
            if not isinstance(v, torch.Tensor):
                # A constant: filled on the device (no host-to-device copy).
                v = torch.full((1, 1), float(v), dtype=like.dtype, device=like.device)
            cols.append(v.expand_as(like))
        return torch.cat(cols, dim=1)

    def residual(self, x: torch.Tensor, t: torch.Tensor, d: Mapping[str, torch.Tensor],
                 params: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """Residuals at interior points: x, t (N, 1); d maps derivative keys to (N, n_out);
        ``params``: the learned coefficients (0-dim tensors), which replace the configured
        values. Returns (N, number of equations)."""
        if self.unknown and params is None:
            missing = [k for k in self.unknown if k not in self.params]
            if missing:
                raise ValueError(f"the residual needs the learned value of {missing[0]}")
        env: Dict[str, Any] = {"x": x, "t": t, **(params or {})}
        for name, (k, key) in self._fields.items():
            if key in d:
                env[name] = d[key][:, k : k + 1]
        return self._eval(self.residuals, x, **env)

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """u(x, t_min): x (N, 1) -> (N, n_out)."""
        return self._eval(self.initial_exprs, x, x=x)

    def initial_velocity(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """u_t(x, t_min) for second order in time, or None: x (N, 1) -> (N, n_out)."""
        return self._eval(self.initial_velocity_exprs, x, x=x) if self.initial_velocity_exprs \
            else None

    def boundary(self, side: str, t: torch.Tensor) -> torch.Tensor:
        """Dirichlet value (or Neumann u_x) at ``side`` (``left``: x_min, ``right``: x_max):
        t (N, 1) -> (N, n_out)."""
        return self._eval(self.boundary_exprs[side], t, t=t)

    def exact(self, x, t):
        """Closed-form solution: x, t arrays or tensors of equal shape -> (..., n_out)."""
        if isinstance(x, torch.Tensor):
            return self._eval(self.exact_exprs, x, x=x, t=t)
        cols = [np.broadcast_to(np.asarray(e({**self.params, "x": x, "t": t}), float), x.shape)
                for e in self.exact_exprs]
        return np.stack(cols, axis=-1)

    def derived_values(self, values: np.ndarray, x: np.ndarray,
                       t: np.ndarray) -> Dict[str, np.ndarray]:
        """The ``derived`` quantities of output values (..., n_out) at x, t (...,):
        name -> (...)."""
        env = {**self.params, "x": x, "t": t,
               **{o: values[..., k] for k, o in enumerate(self.outputs)}}
        return {k: np.broadcast_to(np.asarray(e(env), float), x.shape)
                for k, e in self.derived.items()}

    def reference(self, x: np.ndarray, t: np.ndarray) -> Optional[np.ndarray]:
        """Reference solution on the grid x (Nx,), t (Nt,): (Nt, Nx, n_out), or None."""
        if self.exact_exprs:
            X, T = np.meshgrid(np.asarray(x, float), np.asarray(t, float))  # (Nt, Nx)
            return self.exact(X, T)
        if self.reference_name is not None:
            from pinn.reference.solvers import solve_reference

            return solve_reference(self, np.asarray(x, float), np.asarray(t, float))
        return None

    @property
    def reference_kind(self) -> str:
        if self.exact_exprs:
            return "closed form"
        return self.reference_name or "none"


__all__ = ["PDE", "BOUNDARY_KINDS", "ExpressionError"]
