"""Derived quantities a problem reports beside its errors: integrals over boundary pieces
(the drag and lift on an obstacle), values at points, and expressions of those.

.. code-block:: yaml

    quantities:
      drag: {integral: "2*nu*(u_x*n_x + ...) - p*n_x", over: cylinder}  # over a piece
      p_front: {at: [0.15, 0.2], value: p}                            # at a point
      wake: {line: {from: [0.25, 0.2], to: [2.2, 0.2], points: 200}, value: u}  # a profile
      c_d: 2*drag/(U**2*D)                                            # of earlier quantities
    reference_quantities: {c_d: 5.57953523384}     # published values: relative errors logged

An integrand or a value is an expression in the axes, the parameters, the outputs and their
partials (``u_x``, ``v_y``) and, for an integral, the components of the region's outward unit
normal (``n_x``, ``n_y``, ``n_z``). Integrals take the pieces of a region of shapes
(``pde.geometry``) in a steady problem. Each quantity is logged as ``quantity/<name>``, with
``error/rel/<name>`` = |value - reference| / |reference| where a reference value is given; a
profile (``line``) is written to ``profiles/<name>.csv`` in the run folder instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pinn.coords import CoordinateError, Derivative, parse_key
from pinn.expressions import Expression, constant, parse

_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_]*)")
NORMALS = ("n_x", "n_y", "n_z")
DEFAULT_POINTS = {2: 4096, 3: 128 * 128}


@dataclass(frozen=True)
class Quantity:
    """One quantity: ``kind`` integral (``expr`` over ``pieces`` with ``points`` quadrature
    points each), at (``expr`` at ``point``) or formula (``expr`` of earlier quantities);
    ``fields`` maps the expression's names to the derivatives it reads."""

    name: str
    kind: str
    expr: Expression
    fields: Tuple[Tuple[str, Derivative], ...] = ()
    pieces: Tuple[int, ...] = ()
    point: Tuple[float, ...] = ()
    points: int = 0


def _is_mapping(value: Any) -> bool:
    return hasattr(value, "items") and hasattr(value, "keys")


def _field_names(source: str, pde) -> Dict[str, Derivative]:
    """The outputs and partials an expression names."""
    out: Dict[str, Derivative] = {}
    for ident in _IDENTIFIER.findall(source):
        if ident in pde.outputs:
            out[ident] = Derivative(pde.outputs.index(ident), (0,) * pde.axes.dim)
        head, sep, _ = ident.rpartition("_")
        if sep and head in pde.outputs:
            out[ident] = parse_key(ident, pde.outputs, pde.axes)
    return out


def parse_quantities(spec: Optional[Mapping[str, Any]], reference: Optional[Mapping[str, Any]],
                     pde, key: str = "pde.quantities"
                     ) -> Tuple[List[Quantity], Dict[str, float]]:
    """The quantities of ``spec`` for ``pde`` and their reference values.

    Raises:
        ValueError: an unknown kind, an integral on a box or in a problem in time, a piece that
            does not exist, a point of the wrong size or outside the domain, a name used twice
            or clashing, a reference value for no quantity; one line naming the key.
    """
    out: List[Quantity] = []
    names = set(pde.axes.names) | set(pde.params)
    for name, value in (spec or {}).items():
        name, at = str(name), f"{key}.{name}"
        if not name.isidentifier() or name in names or name in pde.outputs:
            raise ValueError(f"{at}: not allowed as a name (an identifier other than the axes, "
                             "parameters and outputs)")
        earlier = {q.name for q in out}
        if not _is_mapping(value):
            out.append(Quantity(name, "formula", parse(" ".join(str(value).split()),
                                                       set(pde.params) | earlier, key=at)))
            names.add(name)
            continue
        keys = sorted(str(k) for k in value.keys())
        if "integral" in keys:
            out.append(_integral(name, value, keys, pde, at))
        elif "at" in keys:
            out.append(_at(name, value, keys, pde, at))
        elif "line" in keys:
            out.append(_line(name, value, keys, pde, at))
        else:
            raise ValueError(f"{at}: give {{integral: <expression>, over: <piece>}}, {{at: [point], "
                             "value: <expression>}}, {line: {from: [point], to: [point], "
                             "points: n}, value: <expression>} or an expression of earlier "
                             "quantities")
        names.add(name)
    refs: Dict[str, float] = {}
    known = [q.name for q in out]
    for name, v in (reference or {}).items():
        if str(name) not in known:
            raise ValueError(f"pde.reference_quantities.{name}: no such quantity (the quantities "
                             f"are {', '.join(known) or 'none'})")
        refs[str(name)] = constant(v, key=f"pde.reference_quantities.{name}")
    return out, refs


def _fields_source(value: Any, pde, at: str, extra: Tuple[str, ...] = ()):
    source = " ".join(str(value).split())
    try:
        fields = _field_names(source, pde)
    except CoordinateError as e:
        raise CoordinateError(f"{at}: {e}") from None
    expr = parse(source, set(pde.axes.names) | set(pde.params) | set(fields) | set(extra),
                 key=at)
    return expr, tuple(sorted(fields.items()))


def _integral(name: str, value, keys, pde, at: str) -> Quantity:
    bad = [k for k in keys if k not in ("integral", "over", "points")]
    if bad:
        raise ValueError(f"{at}.{bad[0]}: not allowed in an integral (integral, over, points)")
    if pde.region is None:
        raise ValueError(f"{at}: integrals are over the pieces of a region of shapes "
                         "(pde.geometry)")
    if pde.axes.time:
        raise ValueError(f"{at}: integrals are for steady problems; {pde.name} is in time")
    if not pde.region.exact:
        raise ValueError(f"{at}: integrals need pieces of shapes; a domain from point files "
                         "has no quadrature")
    if "over" not in keys:
        raise ValueError(f"{at}.over: give the piece (or shape) to integrate over; the pieces are "
                         f"{', '.join(pde.region.piece_names())}")
    pieces = pde.region.select(str(value["over"]))
    if not pieces:
        raise ValueError(f"{at}.over: {value['over']} is not a piece of the boundary; the pieces "
                         f"are {', '.join(pde.region.piece_names())}")
    k = pde.region.k
    expr, fields = _fields_source(value["integral"], pde, f"{at}.integral", NORMALS[:k])
    n = int(value.get("points", DEFAULT_POINTS[k]))
    if n < 16:
        raise ValueError(f"{at}.points={n} is not allowed: an integer >= 16")
    return Quantity(name, "integral", expr, fields, tuple(pieces), (), n)


def _at(name: str, value, keys, pde, at: str) -> Quantity:
    bad = [k for k in keys if k not in ("at", "value")]
    if bad or "value" not in keys:
        raise ValueError(f"{at}: a point value takes at: [coordinates] and value: <expression>")
    point = tuple(constant(v, key=f"{at}.at") for v in value["at"])
    if len(point) != pde.axes.dim:
        raise ValueError(f"{at}.at: {len(point)} coordinate(s) for the axes "
                         f"{', '.join(pde.axes.names)}")
    _inside(point, pde, f"{at}.at")
    expr, fields = _fields_source(value["value"], pde, f"{at}.value")
    return Quantity(name, "at", expr, fields, (), point, 1)


def _inside(point, pde, at: str) -> None:
    for a, v, lo, hi in zip(pde.axes.names, point, pde.domain.lower, pde.domain.upper):
        if not lo <= v <= hi:
            raise ValueError(f"{at}: {a}={v:g} is outside the domain [{lo:g}, {hi:g}]")
    if pde.region is not None:
        import torch

        if not bool(pde.region.inside(torch.tensor([point], dtype=torch.float64), 1e-12)):
            raise ValueError(f"{at}: {list(point)} is outside the domain (pde.geometry)")


def _line(name: str, value, keys, pde, at: str) -> Quantity:
    """Values along the segment from -> to at ``points`` evenly spaced points (a profile,
    written to ``profiles/<name>.csv`` in the run folder at each evaluation; not a scalar)."""
    bad = [k for k in keys if k not in ("line", "value")]
    spec = value["line"]
    if bad or "value" not in keys or not _is_mapping(spec) or not {"from", "to"} <= set(spec):
        raise ValueError(f"{at}: a profile takes line: {{from: [point], to: [point], points: n}} "
                         "and value: <expression>")
    ends = []
    for k in ("from", "to"):
        point = tuple(constant(v, key=f"{at}.line.{k}") for v in spec[k])
        if len(point) != pde.axes.dim:
            raise ValueError(f"{at}.line.{k}: {len(point)} coordinate(s) for the axes "
                             f"{', '.join(pde.axes.names)}")
        _inside(point, pde, f"{at}.line.{k}")
        ends.append(point)
    n = int(spec.get("points", 101))
    if n < 2:
        raise ValueError(f"{at}.line.points={n} is not allowed: an integer >= 2")
    expr, fields = _fields_source(value["value"], pde, f"{at}.value")
    return Quantity(name, "line", expr, fields, (), ends[0] + ends[1], n)


__all__ = ["Quantity", "parse_quantities", "NORMALS"]
