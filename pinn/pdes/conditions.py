"""Boundary conditions per face of a box, parsed from ``pde.conditions``.

Each face of a non-periodic space axis gets a condition or is declared ``free``:

.. code-block:: yaml

    conditions:
      left: "0"                      # Dirichlet on every output (a list: one per output)
      top: {u: "1", v: "0"}          # Dirichlet on the outputs named
      right: {neumann: {u: "0"}}     # outward normal derivative du/dn = 0 on u
      bottom: {dirichlet: {u: "0"}, neumann: {v: "0"}}
      front: free                    # no condition (the residual alone)

The values are expressions in the axes and the parameters. Faces of a periodic axis
(``pde.periodic``) take no condition: the values and first derivatives of every output along
that axis agree on its two faces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pinn.coords import CoordinateError
from pinn.expressions import Expression, parse
from pinn.geometry import Domain, Face

CONDITION_KINDS = ("dirichlet", "neumann")


@dataclass(frozen=True)
class Condition:
    """One kind of condition on one face, on some outputs.

    Attributes:
        face: where.
        kind: ``dirichlet`` (u = g) or ``neumann`` (du/dn = g, n the outward normal).
        outputs: the output columns it holds for.
        values: one expression per output in ``outputs``.
        direction: for ``neumann``, the sign of the derivative along the face's axis that is
            compared with g: the outward normal's (``face.sign``), except for problems written
            the 1-D way, whose ``neumann`` prescribes u_x at both ends (+1).
    """

    face: Face
    kind: str
    outputs: Tuple[int, ...]
    values: Tuple[Expression, ...]
    direction: float = 0.0

    @property
    def sign(self) -> float:
        return self.direction or self.face.sign


def _source(value: Any) -> str:
    return " ".join(str(value).split())


def _is_mapping(value: Any) -> bool:
    return hasattr(value, "items") and hasattr(value, "keys")


def parse_conditions(spec: Optional[Mapping[str, Any]], domain: Domain,
                     outputs: Sequence[str], names: set, key: str = "pde.conditions"
                     ) -> List[Condition]:
    """The conditions of ``spec`` (the ``pde.conditions`` node) on ``domain``.

    Args:
        spec: face name -> condition (see the module docstring).
        domain: the problem's box.
        outputs: the output names.
        names: the variable names a value may use (the axes and the parameters).

    Raises:
        CoordinateError, ValueError: a face that does not exist (or belongs to time), a
            condition on a periodic face, a face of a non-periodic axis without a condition
            (and not ``free``), an unknown output or kind, a malformed value; one line each.
    """
    spec = spec or {}
    out: List[Condition] = []
    seen: Dict[str, str] = {}
    for name, value in spec.items():
        name = str(name)
        if name in ("t_min", "t_max", "initial"):
            raise CoordinateError(f"{key}.{name}: time has no faces; the condition at t_min is "
                                  "pde.initial (and pde.initial_velocity)")
        face = domain.face(name, key)
        where = f"{key}.{name}"
        if face.name in seen:
            raise ValueError(f"{where}: the face is given twice (also as {seen[face.name]})")
        seen[face.name] = name
        axis = domain.axes.space[face.axis]
        if axis in domain.periodic:
            raise ValueError(f"{where}: the axis {axis} is periodic (pde.periodic), so its faces "
                             "take no condition")
        if isinstance(value, str) and value.strip() == "free":
            continue
        out.extend(_parse_face(value, face, outputs, names, where))
    missing = [domain.display(f) for f in domain.faces.values()
               if f.name not in seen and domain.axes.space[f.axis] not in domain.periodic]
    if missing:
        raise ValueError(f"{key}: the face {missing[0]} has no condition; give one (e.g. "
                         f"{missing[0]}: \"0\" for u = 0) or write {missing[0]}: free")
    return out


def _parse_face(value: Any, face: Face, outputs: Sequence[str], names: set,
                where: str) -> List[Condition]:
    if value is None:
        raise ValueError(f"{where}: empty; give a value, a mapping output: value, "
                         "{dirichlet: ...} / {neumann: ...}, or free")
    if not _is_mapping(value):  # Dirichlet on every output
        return [_condition(face, "dirichlet", _per_output(value, outputs, where), names,
                           where)]
    keys = [str(k) for k in value.keys()]
    if any(k in CONDITION_KINDS for k in keys):
        bad = [k for k in keys if k not in CONDITION_KINDS]
        if bad:
            raise ValueError(f"{where}.{bad[0]}: not allowed beside "
                             f"{'/'.join(CONDITION_KINDS)}: one of {', '.join(CONDITION_KINDS)}")
        conds = []
        for kind in keys:
            sub = value[kind]
            values = (_by_output(sub, outputs, f"{where}.{kind}") if _is_mapping(sub)
                      else _per_output(sub, outputs, f"{where}.{kind}"))
            conds.append(_condition(face, kind, values, names, f"{where}.{kind}"))
        taken = [o for c in conds for o in c.outputs]
        twice = sorted({outputs[o] for o in taken if taken.count(o) > 1})
        if twice:
            raise ValueError(f"{where}: the output {twice[0]} has two conditions on this face")
        return conds
    return [_condition(face, "dirichlet", _by_output(value, outputs, where), names, where)]


def _per_output(value: Any, outputs: Sequence[str], where: str) -> Dict[int, str]:
    """A value for every output: one expression (the same on every output) or a list, one per
    output."""
    if isinstance(value, (str, int, float)):
        return {k: _source(value) for k in range(len(outputs))}
    values = list(value)
    if len(values) != len(outputs):
        raise ValueError(f"{where}: {len(values)} value(s) for the outputs "
                         f"{', '.join(outputs)}: give one per output, or name them "
                         f"({outputs[0]}: ...)")
    return {k: _source(v) for k, v in enumerate(values)}


def _by_output(value: Mapping[str, Any], outputs: Sequence[str], where: str,
               kinds: str = ", ".join(CONDITION_KINDS)) -> Dict[int, str]:
    out = {}
    for name, v in value.items():
        if str(name) not in outputs:
            raise ValueError(f"{where}.{name}: not an output; the outputs are "
                             f"{', '.join(outputs)} (kinds: {kinds}, or free)")
        out[list(outputs).index(str(name))] = _source(v)
    if not out:
        raise ValueError(f"{where}: no output named; e.g. {outputs[0]}: \"0\"")
    return out


def _condition(face: Face, kind: str, values: Dict[int, str], names: set,
               where: str) -> Condition:
    cols = tuple(sorted(values))
    exprs = tuple(parse(values[k], names, key=where) for k in cols)
    return Condition(face, kind, cols, exprs)


__all__ = ["Condition", "CONDITION_KINDS", "parse_conditions"]
