"""The schema of the ``pde`` config group: one problem, written in config (``configs/pde/``).

:mod:`pinn.config` stores it in Hydra's ConfigStore with the other groups' dataclasses and
re-exports it; :mod:`pinn.pdes.problem` builds a problem from a config of this shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


class BoundaryKind(str, Enum):
    dirichlet = "dirichlet"  # u = value
    neumann = "neumann"  # u_x = value
    periodic = "periodic"  # u and u_x equal at both ends


@dataclass
class BoundaryConfig:
    """Boundary conditions at x_min and x_max.

    Attributes:
        kind: dirichlet (u = value), neumann (u_x = value) or periodic (u and u_x equal at
            both ends)
        left: value at x_min: an expression in t and the parameters, or a list of them, one
            per output; unused for periodic boundaries
        right: value at x_max, as left
    """

    kind: BoundaryKind = BoundaryKind.dirichlet
    left: Any = "0"
    right: Any = "0"


@dataclass
class PDEConfig:
    """One problem, written in config: see configs/pde/*.yaml and pinn/pdes/problem.py.

    Attributes:
        name: the problem's name (shown in figures and HParams)
        outputs: names of the network's outputs, e.g. [u] or [u, v]
        axes: the coordinates, space axes from x, y, z in that order and optionally t last
            (e.g. [x, y] or [x, y, t]); null: a problem written the 1-D way, in (x, t) on
            [x_min, x_max] x [t_min, t_max] with pde.boundary
        domain: with axes: the interval of every axis, axis: [lower, upper]
        geometry: with axes: the space part of the domain as shapes and set operations
            (rectangle, disk, ellipse, polygon; box, sphere, cylinder; union, intersection,
            difference; see pinn/geometry/csg.py); pde.domain then gives only t's interval,
            and pde.conditions names the boundary pieces (see pinn/pdes/boundary.py)
        periodic: with axes: space axes whose two faces are identified (values and first
            derivatives agree)
        conditions: with axes: a condition per face (left, right, bottom, top in 2-D; x_min,
            ..., z_max): "0" (Dirichlet on every output), {u: ..} (Dirichlet on u),
            {neumann: {u: ..}} (outward normal derivative), or free
        eval_points: with axes: points per axis of the error grid, axis: count (201 per axis
            in 2-D, 35 in 3-D, 21 in 4-D where not given)
        x_min: left end of the domain (1-D)
        x_max: right end of the domain (1-D)
        t_min: initial time (1-D)
        t_max: final time (1-D)
        params: named constants, numbers or constant expressions ("0.01/pi"), in order
        residual: expression(s) over the axes, the parameters, the outputs and their
            derivatives (u_x, u_xy, u_xxxx: up to order 4) and Laplacians over the space axes
            (lap(u)); a list for systems, or a mapping name: expression, each equation then
            its own loss term res_<name>
        initial: u at t_min, one expression per output (problems in time only)
        initial_velocity: u_t(x, t_min) for problems second order in time; null otherwise
        exact: closed-form solution (expressions in x, t), if there is one
        reference: the name of a reference solver (cole_hopf, allen_cahn, nls) when there is no
            closed form
        reference_file: a reference solution at scattered nodes (text with % or # comments,
            .csv, .npz, .mat; columns the axes, then the outputs; nan where a value is not
            given): the errors are measured at its nodes; a relative path is looked up in the
            working folder, then in configs/pde
        reference_outputs: the outputs the reference file holds (all by default)
        eval_nx: points in x of the grid on which errors are measured
        eval_nt: points in t of that grid
        derived: quantities of the outputs whose errors are reported too, name: expression in
            the outputs, x, t and the parameters (NLS: {h_abs: sqrt(u**2 + v**2)})
        quantities: derived quantities logged beside the errors (quantity/<name>): integrals
            over boundary pieces {integral: <expression>, on: <piece>}, point values {at:
            [coordinates], value: <expression>}, or expressions of earlier ones; see
            pinn/pdes/quantities.py
        reference_quantities: published values of quantities, name: value (error/rel/<name>)
        unknown: coefficients of the residual learned from observations (data.file), name:
            {init, transform: linear|log, scale}; a value in params is the true one
    """

    name: str = MISSING
    outputs: List[str] = field(default_factory=lambda: ["u"])
    axes: Optional[List[str]] = None
    domain: Dict[str, Any] = field(default_factory=dict)
    geometry: Any = None
    periodic: List[str] = field(default_factory=list)
    conditions: Dict[str, Any] = field(default_factory=dict)
    eval_points: Dict[str, int] = field(default_factory=dict)
    x_min: float = -1.0
    x_max: float = 1.0
    t_min: float = 0.0
    t_max: float = 1.0
    params: Dict[str, Any] = field(default_factory=dict)
    unknown: Dict[str, Any] = field(default_factory=dict)
    residual: Any = MISSING
    initial: Any = None
    initial_velocity: Any = None
    boundary: BoundaryConfig = field(default_factory=BoundaryConfig)
    exact: Any = None
    reference: Optional[str] = None
    reference_file: Optional[str] = None
    reference_outputs: Optional[List[str]] = None
    eval_nx: int = 256
    eval_nt: int = 101
    derived: Dict[str, Any] = field(default_factory=dict)
    quantities: Dict[str, Any] = field(default_factory=dict)
    reference_quantities: Dict[str, Any] = field(default_factory=dict)
