"""A problem defined in config: residual, initial and boundary conditions as expressions.

Everything a problem needs is in its YAML file (``configs/pde/<name>.yaml``): the outputs, the
domain, named parameters, the residual (one expression per equation), the initial value (and
initial velocity for second order in time), the boundary conditions, and a closed-form solution
or the name of a reference solver. The expressions are parsed once, here, by the safe parser of
:mod:`pinn.expressions`; the derivatives they name are exactly the ones computed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from pinn.coords import Axes, CoordinateError, Derivative, legacy_key, parse_key
from pinn.expressions import Expression, ExpressionError, constant, parse
from pinn.geometry import Domain
from pinn.pdes.conditions import Condition, parse_conditions
from pinn.pdes.unknowns import parse_unknowns

BOUNDARY_KINDS = ("dirichlet", "neumann", "periodic")
# lap(u) in an expression: the Laplacian of an output over the space axes.
_LAPLACIAN = re.compile(r"\blap\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_]*)")
# Bounds of problems written the 1-D way (x_min, ..., t_max), the schema's defaults.
LEGACY_BOUNDS = {"x_min": -1.0, "x_max": 1.0, "t_min": 0.0, "t_max": 1.0}


def _as_list(value: Any) -> List[str]:
    """Expression source(s) of a config value; line breaks (multi-line YAML) become spaces."""
    if value is None:
        return []
    values = [value] if isinstance(value, (str, int, float)) else list(value)
    return [" ".join(str(v).split()) for v in values]


def _is_mapping(value: Any) -> bool:
    return hasattr(value, "items") and hasattr(value, "keys")


def resolve_data_path(name: str) -> Path:
    """A data file a problem names: as given (absolute, or relative to the working folder)
    where it exists, else relative to the shipped problems' folder (``configs/pde``), where
    the tables of shipped problems live (``data/ghia_re100.txt``)."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists():
        return path
    from pinn.config import CONFIG_DIR

    shipped = Path(CONFIG_DIR) / "pde" / path
    return shipped if shipped.exists() else path


class PDE:
    """A problem on a box in 1-3 space dimensions, steady or in time, built from a ``pde``
    config node.

    A problem written the 1-D way (``x_min``, ``x_max``, ``t_min``, ``t_max``, ``boundary``)
    is the problem on axes (x, t) with conditions on the faces ``left`` and ``right``; one
    written with ``axes`` and ``domain`` declares its coordinates (:mod:`pinn.coords`), its
    faces' conditions (:mod:`pinn.pdes.conditions`) and periodic axes.

    Attributes:
        outputs: output names, e.g. ``("u",)`` or ``("u", "v", "p")``.
        axes, domain: the coordinates and the box (:class:`pinn.geometry.Domain`).
        wanted: the derivatives the residual reads (:class:`pinn.coords.Derivative`).
        derivatives: their 1-D keys (``U``, ``Ux``, ...) where every one has one, else None.
        equations: names of the residual's equations (``residual`` as a mapping) or None; each
            named equation is its own loss term ``res_<name>``.
        conditions: the face conditions; ``domain.periodic`` the periodic axes.
        params: parameter values (floats), constants already folded (``0.01/pi``).
    """

    def __init__(self, cfg: Mapping[str, Any]):
        self.name = str(cfg["name"])
        self.outputs = tuple(str(o) for o in cfg.get("outputs", ["u"]))
        if not self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise ValueError(f"pde.outputs={list(self.outputs)} is not allowed: distinct names")
        self.legacy = cfg.get("axes") is None
        self.axes, self.domain = self._coordinates(cfg)
        axis_names = set(self.axes.names)
        for o in self.outputs:
            if not o.isidentifier() or o in axis_names or o.startswith("lap_"):
                raise ValueError(f"pde.outputs: {o!r} is not allowed: identifiers other than "
                                 f"the axes {', '.join(self.axes.names)}")
        self.params: Dict[str, float] = {}
        for k, v in (cfg.get("params") or {}).items():
            if not str(k).isidentifier() or k in axis_names or k in self.outputs:
                raise ValueError(f"pde.params.{k}: not allowed as a parameter name")
            # Earlier parameters may be used in later ones (``c2: c**2``).
            self.params[str(k)] = constant(v, key=f"pde.params.{k}", names=dict(self.params))
        self._param_sources = {str(k): str(v) for k, v in (cfg.get("params") or {}).items()}
        # Unknown coefficients (inverse problems): learned with the network; a value in params
        # is the true one (the reference and the reported error use it).
        self.unknown = parse_unknowns(cfg.get("unknown"), self.params)
        p = set(self.params)
        self.fields: Dict[str, Derivative] = {}  # name in expressions -> derivative
        self.laplacians: Dict[str, int] = {}  # lap_<output> -> output column
        self.residuals, self.equations = self._parse_residual(
            cfg.get("residual"), axis_names | p | set(self.unknown))
        wanted = {Derivative(k, (0,) * self.axes.dim) for k in range(self.n_out)}
        wanted |= set(self.fields.values())
        wanted |= {Derivative(k, a) for k in self.laplacians.values()
                   for a in self.axes.laplacian()}
        self.wanted = tuple(sorted(wanted, key=lambda d: (d.order, d.output, d.alpha)))
        keys = {legacy_key(d) for d in self.wanted}
        self.derivatives = None if None in keys else frozenset(keys)
        space = set(self.axes.space) | p
        if self.axes.time:
            self.initial_exprs = self._per_output(cfg.get("initial"), space, "pde.initial",
                                                  required=True)
            self.initial_velocity_exprs = self._per_output(cfg.get("initial_velocity"), space,
                                                           "pde.initial_velocity")
        else:
            for k in ("initial", "initial_velocity"):
                if cfg.get(k) is not None:
                    raise ValueError(f"pde.{k}: a steady problem (no t among pde.axes) has no "
                                     "initial condition; remove it or add t to pde.axes")
            self.initial_exprs, self.initial_velocity_exprs = [], []
        self.entries: List[Any] = []  # conditions on the pieces of a region (pde.geometry)
        if self.legacy:
            self.conditions = self._legacy_boundary(cfg.get("boundary") or {}, p)
        elif self.region is not None:
            from pinn.pdes.boundary import parse_piece_conditions

            self.conditions, self.boundary_kind, self.boundary_exprs = [], None, {}
            self.entries = parse_piece_conditions(cfg.get("conditions"), self.region,
                                                  self.outputs, self.params)
        else:
            if cfg.get("boundary") is not None and dict(cfg.get("boundary")) != {
                    "kind": "dirichlet", "left": "0", "right": "0"}:
                raise ValueError("pde.boundary is for problems written the 1-D way (x_min, "
                                 "..., t_max); with pde.axes give pde.conditions per face")
            self.conditions = parse_conditions(cfg.get("conditions"), self.domain,
                                               self.outputs, axis_names | p)
            self.boundary_kind, self.boundary_exprs = None, {}
        self.exact_exprs = self._per_output(cfg.get("exact"), axis_names | p, "pde.exact")
        self.derived: Dict[str, Expression] = {}
        for k, v in (cfg.get("derived") or {}).items():
            if not str(k).isidentifier() or k in self.outputs:
                raise ValueError(f"pde.derived.{k}: not allowed as a name (an identifier "
                                 f"other than the outputs {', '.join(self.outputs)})")
            self.derived[str(k)] = parse(" ".join(str(v).split()),
                                         axis_names | p | set(self.outputs),
                                         key=f"pde.derived.{k}")
        self._check_unknowns()
        from pinn.pdes.quantities import parse_quantities

        self.quantities, self.reference_quantities = parse_quantities(
            cfg.get("quantities"), cfg.get("reference_quantities"), self)
        self.reference_data = self._reference_file(cfg.get("reference_file"),
                                                   cfg.get("reference_outputs"))
        self.reference_name: Optional[str] = cfg.get("reference")
        if self.reference_name is not None:
            if not self.legacy:
                raise ValueError(f"pde.reference={self.reference_name}: the reference solvers "
                                 "solve problems written the 1-D way (x_min, ..., t_max); give "
                                 "pde.exact")
            from pinn.reference.solvers import check_solver

            check_solver(self)

    # -- coordinates ----------------------------------------------------------------------
    def _coordinates(self, cfg: Mapping[str, Any]):
        if self.legacy:
            b = {k: float(cfg.get(k, v)) for k, v in LEGACY_BOUNDS.items()}
            for lo, hi in (("x_min", "x_max"), ("t_min", "t_max")):
                if not b[hi] > b[lo]:
                    raise ValueError(f"pde.{hi}={b[hi]:g} is not allowed: a number > "
                                     f"pde.{lo}={b[lo]:g}")
            kind = str(getattr((cfg.get("boundary") or {}).get("kind", "dirichlet"), "value",
                               (cfg.get("boundary") or {}).get("kind", "dirichlet")))
            axes = Axes(("x",), True)
            periodic = ("x",) if kind == "periodic" else ()
            return axes, Domain(axes, [(b["x_min"], b["x_max"]), (b["t_min"], b["t_max"])],
                                periodic)
        given = [k for k, v in LEGACY_BOUNDS.items() if float(cfg.get(k, v)) != v]
        if given:
            raise ValueError(f"pde.{given[0]} is for problems written the 1-D way; with pde.axes "
                             f"give the bounds in pde.domain ({given[0][0]}: [lower, upper])")
        axes = Axes.parse(list(cfg.get("axes")))
        spec = cfg.get("domain") or {}
        if cfg.get("geometry") is not None:
            from pinn.geometry.config import region_from_config

            return axes, region_from_config(cfg.get("geometry"), axes, spec,
                                            cfg.get("periodic"), resolve_data_path)
        if not _is_mapping(spec):
            raise ValueError("pde.domain: a mapping axis: [lower, upper], e.g. {x: [0, 1], "
                             "y: [0, 1]}")
        extra = [str(k) for k in spec if str(k) not in axes.names]
        if extra:
            raise CoordinateError(f"pde.domain.{extra[0]}: not an axis of this problem (pde.axes "
                                  f"= {list(axes.names)})")
        bounds = []
        for n in axes.names:
            v = spec.get(n)
            if v is None or isinstance(v, (str, int, float)) or len(list(v)) != 2:
                raise CoordinateError(f"pde.domain.{n}: give the interval as [lower, upper]")
            lo, hi = (constant(x, key=f"pde.domain.{n}") for x in v)
            bounds.append((lo, hi))
        periodic = [str(a) for a in (cfg.get("periodic") or [])]
        return axes, Domain(axes, bounds, periodic)

    def _reference_file(self, name: Optional[str], outputs: Optional[Sequence[str]]):
        """The reference solution at the nodes of ``pde.reference_file`` (columns: the axes,
        then ``pde.reference_outputs``, every output by default), read and checked now."""
        if outputs is not None and name is None:
            raise ValueError("pde.reference_outputs names the outputs of pde.reference_file; "
                             "give the file too")
        if name is None:
            return None
        from pinn.reference.files import read_reference

        outs = tuple(str(o) for o in (outputs if outputs is not None else self.outputs))
        bad = [o for o in outs if o not in self.outputs]
        if bad or not outs:
            raise ValueError(f"pde.reference_outputs={list(outs)} is not allowed: some of the "
                             f"outputs {', '.join(self.outputs)}")
        bounds = {a: (lo, hi) for a, lo, hi in zip(self.axes.names, self.domain.lower,
                                                   self.domain.upper)}
        return read_reference(resolve_data_path(str(name)), self.axes.names, outs,
                              bounds=bounds)

    # -- parsing helpers ----------------------------------------------------------------
    def _parse_residual(self, value: Any, names: set):
        """The residual's expressions and (a mapping) its equations' names."""
        equations = None
        if _is_mapping(value):
            equations = [str(k) for k in value.keys()]
            for k in equations:
                if not k.isidentifier():
                    raise ValueError(f"pde.residual.{k}: an equation's name is an identifier "
                                     "(it names the loss term res_<name>)")
            sources = [(f"pde.residual.{k}", " ".join(str(value[k]).split())) for k in equations]
        else:
            listed = _as_list(value)
            sources = [(f"pde.residual[{i}]" if len(listed) > 1 else "pde.residual", s)
                       for i, s in enumerate(listed)]
        if not sources:
            raise ValueError("pde.residual is missing: give an expression (or a list of them)")
        return [self._parse_fields(s, names, key) for key, s in sources], equations

    def _parse_fields(self, source: str, names: set, key: str) -> Expression:
        """An expression over the outputs, their derivatives (``u_xy``) and Laplacians
        (``lap(u)``); the derivatives it names join :attr:`fields`."""
        def lap(m):
            out = m.group(1)
            if out not in self.outputs:
                raise ExpressionError(f"{key}: lap() takes an output ({', '.join(self.outputs)}),"
                                      f" got {out!r}: in '{source}'")
            self.laplacians[f"lap_{out}"] = self.outputs.index(out)
            return f"lap_{out}"

        text = _LAPLACIAN.sub(lap, source)
        used = set(self.outputs) | set(self.laplacians)
        for ident in _IDENTIFIER.findall(text):
            head, sep, _ = ident.rpartition("_")
            if sep and head in self.outputs:
                try:
                    self.fields[ident] = parse_key(ident, self.outputs, self.axes)
                except CoordinateError as e:
                    raise CoordinateError(f"{key}: {e}") from None
                used.add(ident)
        for o in self.outputs:
            self.fields.setdefault(o, Derivative(self.outputs.index(o), (0,) * self.axes.dim))
        return parse(text, names | used, key=key)

    def _legacy_boundary(self, bc: Mapping[str, Any], p: set) -> List[Condition]:
        """The conditions of ``pde.boundary`` (1-D): Dirichlet or Neumann (u_x, not the outward
        derivative) on every output at both ends, or periodic."""
        self.boundary_kind = str(getattr(bc.get("kind", "dirichlet"), "value",
                                         bc.get("kind", "dirichlet")))
        if self.boundary_kind not in BOUNDARY_KINDS:
            raise ValueError(f"pde.boundary.kind={self.boundary_kind!r} is not allowed: one of "
                             f"{', '.join(BOUNDARY_KINDS)}")
        self.boundary_exprs = {}
        conditions = []
        if self.boundary_kind != "periodic":
            for side in ("left", "right"):
                self.boundary_exprs[side] = self._per_output(
                    bc.get(side, "0"), {"t"} | p, f"pde.boundary.{side}", required=True)
                conditions.append(Condition(self.domain.face(side), self.boundary_kind,
                                            tuple(range(self.n_out)),
                                            tuple(self.boundary_exprs[side]), direction=1.0))
        return conditions

    def _check_unknowns(self) -> None:
        """An unknown must be a coefficient of the residual, not of the initial or boundary
        data (the closed form and the reference use its true value, from pde.params)."""
        in_residual = {n for e in self.residuals for n in e.names}
        elsewhere = {"pde.initial": self.initial_exprs,
                     "pde.initial_velocity": self.initial_velocity_exprs,
                     "pde.conditions": [e for c in self.conditions for e in c.values]
                     + [e for en in self.entries for c in en.conditions
                        for e in (*c.values, *c.a, *c.b)]}
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

    @property
    def region(self):
        """The region of a problem on shapes (``pde.geometry``), else None (a box)."""
        from pinn.geometry.region import Region

        return self.domain if isinstance(self.domain, Region) else None

    @property
    def steady(self) -> bool:
        return not self.axes.time

    # The 1-D conveniences of a problem on axes (x, t).
    def _xt_bound(self, i: int, upper: bool) -> float:
        if self.axes.names != ("x", "t"):
            raise AttributeError(f"{self.name}: x_min, ..., t_max are for problems in (x, t); "
                                 f"this one is in ({', '.join(self.axes.names)})")
        return self.domain.upper[i] if upper else self.domain.lower[i]

    x_min = property(lambda self: self._xt_bound(0, False))
    x_max = property(lambda self: self._xt_bound(0, True))
    t_min = property(lambda self: self._xt_bound(1, False))
    t_max = property(lambda self: self._xt_bound(1, True))

    def columns(self, points: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Axis name -> its column (N, 1) of ``points`` (N, d)."""
        return {n: points[:, i : i + 1] for i, n in enumerate(self.axes.names)}

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

    def _check_learned(self, params) -> None:
        if self.unknown and params is None:
            missing = [k for k in self.unknown if k not in self.params]
            if missing:
                raise ValueError(f"the residual needs the learned value of {missing[0]}")

    def residual_at(self, points: torch.Tensor, fields: Mapping[Derivative, torch.Tensor],
                    params: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """Residuals at ``points`` (N, d); ``fields`` maps each derivative of :attr:`wanted` to
        an (N, 1) column; ``params``: the learned coefficients (0-dim tensors), which replace
        the configured values. Returns (N, number of equations)."""
        self._check_learned(params)
        env: Dict[str, Any] = {**self.columns(points), **(params or {})}
        for name, d in self.fields.items():
            env[name] = fields[d]
        for name, k in self.laplacians.items():
            terms = [fields[Derivative(k, a)] for a in self.axes.laplacian()]
            env[name] = terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])
        return self._eval(self.residuals, points[:, :1], **env)

    def residual(self, x: torch.Tensor, t: torch.Tensor, d: Mapping[str, torch.Tensor],
                 params: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """The 1-D form of :meth:`residual_at`: x, t (N, 1); d maps the keys of
        :attr:`derivatives` (``U``, ``Ux``, ...) to (N, n_out)."""
        self._check_learned(params)
        env: Dict[str, Any] = {"x": x, "t": t, **(params or {})}
        for name, f in self.fields.items():
            key = legacy_key(f)
            if key in d:
                env[name] = d[key][:, f.output : f.output + 1]
        return self._eval(self.residuals, x, **env)

    def initial_at(self, points: torch.Tensor) -> torch.Tensor:
        """u at t_min: points (N, d) (their space columns are read) -> (N, n_out)."""
        return self._eval(self.initial_exprs, points[:, :1], **self.columns(points))

    def initial_velocity_at(self, points: torch.Tensor) -> Optional[torch.Tensor]:
        """u_t at t_min for second order in time, or None: points (N, d) -> (N, n_out)."""
        if not self.initial_velocity_exprs:
            return None
        return self._eval(self.initial_velocity_exprs, points[:, :1], **self.columns(points))

    def condition_values(self, condition: Condition, points: torch.Tensor) -> torch.Tensor:
        """The prescribed values of ``condition`` at ``points`` (N, d): (N, its outputs)."""
        return self._eval(condition.values, points[:, :1], **self.columns(points))

    def expressions_at(self, exprs: Sequence[Expression], points: torch.Tensor) -> torch.Tensor:
        """Expressions in the axes and parameters at ``points`` (N, d): (N, len(exprs))."""
        return self._eval(exprs, points[:, :1], **self.columns(points))

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """u(x, t_min) of a problem in (x, t): x (N, 1) -> (N, n_out)."""
        return self._eval(self.initial_exprs, x, x=x)

    def initial_velocity(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """u_t(x, t_min) for second order in time, or None: x (N, 1) -> (N, n_out)."""
        return self._eval(self.initial_velocity_exprs, x, x=x) if self.initial_velocity_exprs \
            else None

    def boundary(self, side: str, t: torch.Tensor) -> torch.Tensor:
        """Dirichlet value (or Neumann u_x) at ``side`` (``left``: x_min, ``right``: x_max) of
        a problem written the 1-D way: t (N, 1) -> (N, n_out)."""
        return self._eval(self.boundary_exprs[side], t, t=t)

    def exact_at(self, points: torch.Tensor) -> torch.Tensor:
        """Closed-form solution at ``points`` (N, d): (N, n_out)."""
        return self._eval(self.exact_exprs, points[:, :1], **self.columns(points))

    def exact(self, x, t):
        """Closed-form solution of a problem in (x, t): x, t arrays or tensors of equal shape ->
        (..., n_out)."""
        if isinstance(x, torch.Tensor):
            return self._eval(self.exact_exprs, x, x=x, t=t)
        return self.exact_on({"x": x, "t": t})

    def exact_on(self, coords: Mapping[str, np.ndarray]) -> np.ndarray:
        """Closed-form solution on arrays of equal shape, one per axis: (..., n_out)."""
        shape = np.shape(next(iter(coords.values())))
        cols = [np.broadcast_to(np.asarray(e({**self.params, **coords}), float), shape)
                for e in self.exact_exprs]
        return np.stack(cols, axis=-1)

    def derived_values(self, values: np.ndarray, x: np.ndarray,
                       t: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """The ``derived`` quantities of output values (..., n_out): name -> (...). The
        coordinates: ``x`` and ``t`` (problems in (x, t)) or a mapping axis -> array."""
        coords = dict(x) if isinstance(x, Mapping) else {"x": x, "t": t}
        shape = values.shape[:-1]
        env = {**self.params, **coords,
               **{o: values[..., k] for k, o in enumerate(self.outputs)}}
        return {k: np.broadcast_to(np.asarray(e(env), float), shape)
                for k, e in self.derived.items()}

    def reference(self, x: np.ndarray, t: np.ndarray) -> Optional[np.ndarray]:
        """Reference solution of a problem in (x, t) on the grid x (Nx,), t (Nt,):
        (Nt, Nx, n_out), or None."""
        if self.exact_exprs:
            X, T = np.meshgrid(np.asarray(x, float), np.asarray(t, float))  # (Nt, Nx)
            return self.exact(X, T)
        if self.reference_name is not None:
            from pinn.reference.solvers import solve_reference

            return solve_reference(self, np.asarray(x, float), np.asarray(t, float))
        return None

    @property
    def reference_kind(self) -> str:
        if self.reference_data is not None:
            return f"file {self.reference_data.path.name}"
        if self.exact_exprs:
            return "closed form"
        return self.reference_name or "none"


__all__ = ["PDE", "BOUNDARY_KINDS", "ExpressionError"]
