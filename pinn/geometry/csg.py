"""Set operations on shapes, and shapes from YAML.

``union``, ``intersection`` and ``difference`` (the first shape minus all the others) nest to
any depth. Their level functions are min / max compositions of the primitives' (negative
inside), so inside tests are exact. Their boundary is made of the primitives' pieces, each
with the orientation it has in the result (a hole's outward normal points into the hole) --
which parts of a piece lie on the result's boundary is decided by :class:`pinn.geometry.region.
Region` from the result's level on both sides of each point.

A shape in YAML (``pde.geometry``) is a mapping with ``shape`` and its parameters, or a set
operation over a list of shapes:

.. code-block:: yaml

    geometry:
      difference:
        - {shape: rectangle, name: plate, min: [0, 0], max: [2, 1]}
        - {shape: disk, name: hole, center: [0.5, 0.5], radius: 0.2}
        - {shape: ellipse, name: slot, center: [1.5, 0.5], radii: [0.3, 0.1]}

Primitives: 2-D ``rectangle`` (min, max), ``disk`` (center, radius), ``ellipse`` (center,
radii), ``polygon`` (vertices); 3-D ``box`` (min, max), ``sphere`` (center, radius),
``cylinder`` (base, radius, height, axis). ``name`` is optional (default: the kind and a
number, ``disk1``) and unique; ``density`` (default 1) multiplies the boundary points per unit
length (area) on the shape's pieces, relative to the others (an obstacle refined).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from torch import Tensor

from pinn.geometry.shapes import (Bounds, Cuboid, Cylinder, Disk, Ellipse, GeometryError,
                                  Piece, Polygon, Rectangle, Shape, Sphere)

OPERATIONS = ("union", "intersection", "difference")
PRIMITIVES: Dict[str, Tuple[int, Tuple[str, ...]]] = {  # kind -> (dimension, parameters)
    "rectangle": (2, ("min", "max")),
    "disk": (2, ("center", "radius")),
    "ellipse": (2, ("center", "radii")),
    "polygon": (2, ("vertices",)),
    "box": (3, ("min", "max")),
    "sphere": (3, ("center", "radius")),
    "cylinder": (3, ("base", "radius", "height", "axis")),
}


class SetOperation(Shape):
    kind = "operation"

    def __init__(self, op: str, children: List[Shape]):
        self.op, self.children = op, children
        self.dim = children[0].dim
        self.name = op

    def level(self, p: Tensor) -> Tensor:
        levels = [c.level(p) for c in self.children]
        if self.op == "union":
            out = levels[0]
            for v in levels[1:]:
                out = out.minimum(v)
        elif self.op == "intersection":
            out = levels[0]
            for v in levels[1:]:
                out = out.maximum(v)
        else:
            out = levels[0]
            for v in levels[1:]:
                out = out.maximum(-v)
        return out

    @property
    def bbox(self) -> Bounds:
        boxes = [c.bbox for c in self.children]
        if self.op == "union":
            lo = tuple(min(b[0][j] for b in boxes) for j in range(self.dim))
            hi = tuple(max(b[1][j] for b in boxes) for j in range(self.dim))
        elif self.op == "intersection":
            lo = tuple(max(b[0][j] for b in boxes) for j in range(self.dim))
            hi = tuple(min(b[1][j] for b in boxes) for j in range(self.dim))
        else:
            lo, hi = boxes[0]
        return lo, hi

    @property
    def pieces(self) -> List[Tuple[Piece, bool]]:
        out = []
        for i, c in enumerate(self.children):
            flip = self.op == "difference" and i > 0
            out.extend((q, f != flip) for q, f in c.pieces)
        return out

    @property
    def shapes(self) -> List[Shape]:
        return [s for c in self.children for s in c.shapes]


def _is_mapping(value: Any) -> bool:
    return hasattr(value, "items") and hasattr(value, "keys")


def build_shape(spec: Any, dim: int, key: str = "pde.geometry") -> Shape:
    """The shape of a ``pde.geometry`` node in ``dim`` space dimensions (2 or 3).

    Raises:
        GeometryError: an unknown kind or operation, a parameter missing or unknown, a shape of
            the wrong dimension, a repeated name, a polygon crossing itself; one line naming
            the key.
    """
    counter: Dict[str, int] = {}
    names: Dict[str, str] = {}
    shape = _build(spec, dim, key, counter, names)
    return shape


def _build(spec: Any, dim: int, key: str, counter: Dict[str, int],
           names: Dict[str, str]) -> Shape:
    if not _is_mapping(spec):
        raise GeometryError(f"{key}: a shape ({{shape: disk, center: [0, 0], radius: 1}}) or "
                            f"a set operation ({', '.join(OPERATIONS)}: [shapes])")
    keys = [str(k) for k in spec.keys()]
    ops = [k for k in keys if k in OPERATIONS]
    if ops:
        op = ops[0]
        extra = [k for k in keys if k != op]
        if extra:
            raise GeometryError(f"{key}.{extra[0]}: not allowed beside {op} (a set operation "
                                "takes only its list of shapes)")
        items = spec[op]
        if isinstance(items, (str, bytes)) or not hasattr(items, "__len__") or len(items) < 2:
            raise GeometryError(f"{key}.{op}: a list of at least two shapes")
        children = [_build(s, dim, f"{key}.{op}[{i}]", counter, names)
                    for i, s in enumerate(items)]
        return SetOperation(op, children)
    if "shape" not in keys:
        raise GeometryError(f"{key}: give shape: <kind> ({', '.join(PRIMITIVES)}) or a set "
                            f"operation ({', '.join(OPERATIONS)}); got keys {keys}")
    kind = str(spec["shape"])
    if kind not in PRIMITIVES:
        raise GeometryError(f"{key}.shape={kind!r} is not allowed: one of "
                            f"{', '.join(PRIMITIVES)}")
    kdim, params = PRIMITIVES[kind]
    if kdim != dim:
        allowed = [k for k, (d, _) in PRIMITIVES.items() if d == dim]
        raise GeometryError(f"{key}.shape={kind} is a {kdim}-D shape; this problem has {dim} "
                            f"space axes: one of {', '.join(allowed)}")
    for k in keys:
        if k not in ("shape", "name", "density", *params):
            raise GeometryError(f"{key}.{k}: not a parameter of a {kind} (it takes "
                                f"{', '.join(params)}, name, density)")
    required = [p for p in params if p not in keys and not (kind == "cylinder" and p == "axis")]
    if required:
        raise GeometryError(f"{key}.{required[0]}: missing (a {kind} takes "
                            f"{', '.join(params)})")
    counter[kind] = counter.get(kind, 0) + 1
    name = str(spec.get("name") or f"{kind}{counter[kind]}")
    if not name.isidentifier():
        raise GeometryError(f"{key}.name={name!r} is not allowed: an identifier (it names the "
                            "boundary pieces in pde.conditions)")
    if name in names:
        raise GeometryError(f"{key}.name={name}: also the name of {names[name]}; names are "
                            "unique")
    names[name] = key
    shape = _primitive(kind, name, spec, key)
    if "density" in keys:
        try:
            shape.density = float(spec["density"])
        except (TypeError, ValueError):
            shape.density = float("nan")
        if not 0 < shape.density < float("inf"):
            raise GeometryError(f"{key}.density={spec['density']!r} is not allowed: a number "
                                "> 0 (boundary points per length, relative to the other shapes)")
    return shape


def _primitive(kind: str, name: str, spec, key: str) -> Shape:
    if kind == "rectangle":
        return Rectangle(name, spec["min"], spec["max"], key)
    if kind == "disk":
        return Disk(name, spec["center"], spec["radius"], key)
    if kind == "ellipse":
        return Ellipse(name, spec["center"], spec["radii"], key)
    if kind == "polygon":
        return Polygon(name, spec["vertices"], key)
    if kind == "box":
        return Cuboid(name, spec["min"], spec["max"], key)
    if kind == "sphere":
        return Sphere(name, spec["center"], spec["radius"], key)
    return Cylinder(name, spec["base"], spec["radius"], spec["height"],
                    str(spec.get("axis", "z")), key)


__all__ = ["OPERATIONS", "PRIMITIVES", "SetOperation", "build_shape"]
