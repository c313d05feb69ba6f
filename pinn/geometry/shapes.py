"""Primitive shapes in space and the pieces of their boundaries.

2-D: :class:`Rectangle`, :class:`Disk`, :class:`Ellipse`, :class:`Polygon`; 3-D:
:class:`Cuboid` (``box`` in YAML), :class:`Sphere`, :class:`Cylinder`. Each answers:

* ``level(p)``: a function of points (N, k) that is negative inside, zero on the boundary and
  positive outside; its sign is exact (the signed distance for all but the ellipse, whose
  level is ``sqrt((x/a)^2 + (y/b)^2) - 1``). Set operations combine levels by min and max
  (:mod:`pinn.geometry.csg`).
* ``bbox``: (lower, upper) per space axis.
* ``pieces``: its boundary as named :class:`Piece` s, each mapping unit draws (n, k - 1)
  onto itself *uniformly by length or area*, with the exact outward unit normals.

Piece names: the shape's name for a round shape and a polygon (``hole``); ``<name>.<face>``
for the faces of a rectangle (``left``, ``right``, ``bottom``, ``top``), a box (``x_min``,
..., ``z_max``) and a cylinder (``side``, ``bottom``, ``top``). Points are float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

Bounds = Tuple[Tuple[float, ...], Tuple[float, ...]]


class GeometryError(ValueError):
    """A shape or a set operation that cannot describe a domain; one line naming the key."""


@dataclass(frozen=True)
class Piece:
    """One named piece of a shape's boundary.

    Attributes:
        name: ``<shape>`` or ``<shape>.<face>``.
        shape: the name of the shape it belongs to.
        measure: its length (2-D) or area (3-D).
        draw: unit draws (n, k - 1) -> (points (n, k), outward unit normals (n, k)), uniform
            by measure.
    """

    name: str
    shape: str
    measure: float
    draw: Callable[[Tensor], Tuple[Tensor, Tensor]]
    # points (N, k) -> (N,): a distance to the piece normalized to first order (0 on it, unit
    # normal derivative there, > 0 on the shape's side), for hard conditions
    distance: Optional[Callable[[Tensor], Tensor]] = None
    signed: bool = False  # the distance is negative beyond the piece (a hole's: flip it)


def _vec(values, n: int, key: str) -> Tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise GeometryError(f"{key}: give {n} numbers, e.g. {[0.0] * n}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise GeometryError(f"{key}: give {n} finite numbers, got {list(values)}")
    return out


def _positive(value, key: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{key}={value!r} is not allowed: a number > 0") from None
    if not (v > 0 and math.isfinite(v)):
        raise GeometryError(f"{key}={value!r} is not allowed: a number > 0")
    return v


def _segment(a: Sequence[float], b: Sequence[float], normal: Sequence[float]):
    """Uniform draws on the segment a-b (2-D) with a fixed normal."""
    a_, b_ = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    n_ = torch.tensor(normal, dtype=torch.float64)

    def draw(u: Tensor) -> Tuple[Tensor, Tensor]:
        p = a_ + u[:, :1] * (b_ - a_)
        return p, n_.expand_as(p).clone()
    return draw


def trimmed(f: Tensor, t: Tensor) -> Tensor:
    """Sukumar & Srivastava's trimming (CMAME 389 (2022) 114333, eq. 25): from f, a distance
    to a curve or surface normalized to first order, and t, a trimming function >= 0 on the
    part to keep, a smooth function >= 0 that vanishes on that part only, with unit normal
    derivative there (it is |f| to fourth order where t > 0)."""
    varphi = torch.sqrt(t * t + f ** 4)
    return torch.sqrt(f * f + ((varphi - t) / 2) ** 2)


def _ball_trim(p: Tensor, center: Sequence[float], radius: float) -> Tensor:
    """(r^2 - |p - c|^2) / 2r: >= 0 in the ball of radius r about c, normalized to first order."""
    return (radius ** 2 - (p - p.new_tensor(center)).square().sum(1)) / (2 * radius)


def segment_distance(a: Sequence[float], b: Sequence[float]) -> Callable[[Tensor], Tensor]:
    """The trimmed distance to the segment a-b (Sukumar & Srivastava, CMAME 389 (2022)
    114333, eq. 25): zero on the segment only, its normal derivative 1 there, smooth."""
    ax, ay = float(a[0]), float(a[1])
    bx, by = float(b[0]), float(b[1])
    length = math.hypot(bx - ax, by - ay)
    center = ((ax + bx) / 2, (ay + by) / 2)

    def phi(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        f = ((x - ax) * (by - ay) - (y - ay) * (bx - ax)) / length  # signed distance to the line
        return trimmed(f, _ball_trim(p, center, length / 2))
    return phi


def face_distance(lower, upper, axis: int, upper_side: bool) -> Callable[[Tensor], Tensor]:
    """The trimmed distance to a face of an axis-aligned box normal to ``axis``: the distance
    to its plane, trimmed by the R-conjunction t1 + t2 - sqrt(t1^2 + t2^2) of the slabs
    t_j = ((w_j / 2)^2 - (x_j - c_j)^2) / w_j of the face's extent along the other axes (>= 0
    on the face's rectangle only), so that it vanishes on the face and nowhere else."""
    others = [j for j in range(len(lower)) if j != axis]
    plane = float(upper[axis] if upper_side else lower[axis])
    mids = [(lower[j] + upper[j]) / 2 for j in others]
    widths = [upper[j] - lower[j] for j in others]

    def phi(p: Tensor) -> Tensor:
        slabs = [((w / 2) ** 2 - (p[:, j] - c) ** 2) / w for j, c, w in zip(others, mids, widths)]
        t = slabs[0]
        for s in slabs[1:]:
            t = t + s - torch.sqrt(t * t + s * s)
        return trimmed(p[:, axis] - plane, t)
    return phi


def products_of_others(values: Sequence[Tensor]) -> List[Tensor]:
    """prod_{j != k} v_j for each k (two or more values), without division by a v."""
    others = []
    for k in range(len(values)):
        prod = None
        for j, v in enumerate(values):
            if j != k:
                prod = v if prod is None else prod * v
        others.append(prod)
    return others


def r_equivalence(values: Sequence[Tensor]) -> Tensor:
    """The R-equivalence (m = 2) of distances phi_i: prod phi / sqrt(sum_k prod_{j!=k}
    phi_j^2), zero where any phi_i is, written without division by a phi."""
    if len(values) == 1:
        return values[0]
    others = products_of_others(values)
    full = others[0] * values[0]
    den = torch.sqrt(sum(o * o for o in others))
    # Where two distances vanish at once (a corner), the limit is 0: no 0 / 0.
    return full / torch.where(den > 0, den, torch.ones_like(den))


def _rectangle_face(lower, upper, axis: int, upper_side: bool):
    """Uniform draws on a face of an axis-aligned box (any dimension) normal to ``axis``."""
    k = len(lower)
    lo, hi = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
    others = [j for j in range(k) if j != axis]
    normal = torch.zeros(k, dtype=torch.float64)
    normal[axis] = 1.0 if upper_side else -1.0

    def draw(u: Tensor) -> Tuple[Tensor, Tensor]:
        p = torch.empty(u.shape[0], k, dtype=torch.float64)
        for c, j in enumerate(others):
            p[:, j] = lo[j] + u[:, c] * (hi[j] - lo[j])
        p[:, axis] = hi[axis] if upper_side else lo[axis]
        return p, normal.expand_as(p).clone()
    return draw


class Shape:
    """Base of primitives and set operations: ``name``, ``dim``, ``bbox``, ``level``,
    ``pieces``, ``shapes`` (the primitives, in the order written)."""

    name: str
    dim: int
    kind: str = "shape"
    density: float = 1.0  # boundary points per unit measure, relative to the other shapes'

    def level(self, p: Tensor) -> Tensor:  # (N, k) -> (N,)
        raise NotImplementedError

    @property
    def bbox(self) -> Bounds:
        raise NotImplementedError

    @property
    def pieces(self) -> List[Tuple[Piece, bool]]:
        """The primitives' pieces with whether the domain's outward normal is the piece's
        (False) or its opposite (True: the boundary of a hole)."""
        return [(q, False) for q in self._pieces()]

    def density_of(self, shape: str) -> float:
        """The boundary density of the primitive called ``shape``."""
        return next(s.density for s in self.shapes if s.name == shape)

    def _pieces(self) -> List[Piece]:
        raise NotImplementedError

    @property
    def shapes(self) -> List["Shape"]:
        return [self]

    def inside(self, p: Tensor) -> Tensor:
        """Whether each point (N, k) lies in the closed shape; (N,) bool."""
        return self.level(p) <= 0


# -- 2-D ---------------------------------------------------------------------------------------

class Rectangle(Shape):
    kind = "rectangle"
    DIM = 2
    FACES = (("left", 0, False), ("right", 0, True), ("bottom", 1, False), ("top", 1, True))

    def __init__(self, name: str, lower, upper, key: str):
        self.name, self.dim = name, self.DIM
        self.lower = _vec(lower, self.DIM, f"{key}.min")
        self.upper = _vec(upper, self.DIM, f"{key}.max")
        if not all(h > lo for lo, h in zip(self.lower, self.upper)):
            raise GeometryError(f"{key}: max={list(self.upper)} must exceed min="
                                f"{list(self.lower)} on every axis")

    def level(self, p: Tensor) -> Tensor:
        lo = p.new_tensor(self.lower)
        hi = p.new_tensor(self.upper)
        q = torch.maximum(lo - p, p - hi)  # (N, k): > 0 outside along that axis
        outside = q.clamp(min=0).norm(dim=1)
        return torch.where(outside > 0, outside, q.max(dim=1).values)

    @property
    def bbox(self) -> Bounds:
        return self.lower, self.upper

    def _pieces(self) -> List[Piece]:
        out = []
        (x0, y0), (x1, y1) = self.lower, self.upper
        ends = {"left": ((x0, y0), (x0, y1)), "right": ((x1, y0), (x1, y1)),
                "bottom": ((x0, y0), (x1, y0)), "top": ((x0, y1), (x1, y1))}
        for face, axis, up in self.FACES:
            span = self.upper[1 - axis] - self.lower[1 - axis]
            out.append(Piece(f"{self.name}.{face}", self.name, span,
                             _rectangle_face(self.lower, self.upper, axis, up),
                             segment_distance(*ends[face])))
        return out


class Disk(Shape):
    kind = "disk"
    DIM = 2

    def __init__(self, name: str, center, radius, key: str):
        self.name, self.dim = name, self.DIM
        self.center = _vec(center, self.DIM, f"{key}.center")
        self.radius = _positive(radius, f"{key}.radius")

    def level(self, p: Tensor) -> Tensor:
        return (p - p.new_tensor(self.center)).norm(dim=1) - self.radius

    @property
    def bbox(self) -> Bounds:
        c, r = self.center, self.radius
        return tuple(v - r for v in c), tuple(v + r for v in c)

    def _pieces(self) -> List[Piece]:
        c = torch.tensor(self.center, dtype=torch.float64)

        def draw(u: Tensor) -> Tuple[Tensor, Tensor]:
            th = 2 * math.pi * u[:, 0]
            n = torch.stack([torch.cos(th), torch.sin(th)], dim=1)
            return c + self.radius * n, n

        def phi(p: Tensor) -> Tensor:  # (r^2 - |p - c|^2) / 2r: > 0 inside
            return (self.radius ** 2 - (p - p.new_tensor(self.center)).square().sum(1)) \
                / (2 * self.radius)
        return [Piece(self.name, self.name, 2 * math.pi * self.radius, draw, phi, True)]


class Ellipse(Shape):
    """Axis-aligned: (x - cx)^2 / a^2 + (y - cy)^2 / b^2 <= 1."""
    kind = "ellipse"

    def __init__(self, name: str, center, radii, key: str):
        self.name, self.dim = name, 2
        self.center = _vec(center, 2, f"{key}.center")
        a, b = _vec(radii, 2, f"{key}.radii")
        self.radii = (_positive(a, f"{key}.radii[0]"), _positive(b, f"{key}.radii[1]"))
        # Arc length s(theta) on a fine grid (trapezoid rule on the speed), inverted by
        # interpolation and refined by Newton steps on the exact speed.
        m = 1 << 14
        th = torch.linspace(0, 2 * math.pi, m + 1, dtype=torch.float64)
        speed = self._speed(th)
        s = torch.cat([torch.zeros(1, dtype=torch.float64),
                       torch.cumsum(0.5 * (speed[1:] + speed[:-1]) * (th[1] - th[0]), 0)])
        self._theta, self._s = th, s
        self.perimeter = float(s[-1])

    def _speed(self, th: Tensor) -> Tensor:
        a, b = self.radii
        return torch.sqrt((a * torch.sin(th)) ** 2 + (b * torch.cos(th)) ** 2)

    def level(self, p: Tensor) -> Tensor:
        q = (p - p.new_tensor(self.center)) / p.new_tensor(self.radii)
        return q.norm(dim=1) - 1.0

    @property
    def bbox(self) -> Bounds:
        (cx, cy), (a, b) = self.center, self.radii
        return (cx - a, cy - b), (cx + a, cy + b)

    def _pieces(self) -> List[Piece]:
        c = torch.tensor(self.center, dtype=torch.float64)
        a, b = self.radii

        def draw(u: Tensor) -> Tuple[Tensor, Tensor]:
            target = u[:, 0] * self.perimeter
            i = torch.searchsorted(self._s, target).clamp(1, len(self._s) - 1)
            s0, s1 = self._s[i - 1], self._s[i]
            t0, t1 = self._theta[i - 1], self._theta[i]
            th = t0 + (target - s0) / (s1 - s0) * (t1 - t0)
            p = torch.stack([c[0] + a * torch.cos(th), c[1] + b * torch.sin(th)], dim=1)
            n = torch.stack([b * torch.cos(th), a * torch.sin(th)], dim=1)
            return p, n / n.norm(dim=1, keepdim=True)

        def phi(p: Tensor) -> Tensor:  # (1 - q^2) / |grad q^2| on the boundary's scale
            q = (p - p.new_tensor(self.center)) / p.new_tensor(self.radii)
            return (1 - q.square().sum(1)) * min(a, b) / 2
        return [Piece(self.name, self.name, self.perimeter, draw, phi, True)]


def _segments_cross(p1, p2, q1, q2) -> bool:
    """Whether the closed segments p1-p2 and q1-q2 (2-D tuples) meet."""
    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return 0 if abs(v) < 1e-14 else (1 if v > 0 else -1)

    def on(a, b, c):  # c on segment a-b, given collinear
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and \
            min(a[1], b[1]) <= c[1] <= max(a[1], b[1])
    o1, o2, o3, o4 = orient(p1, p2, q1), orient(p1, p2, q2), orient(q1, q2, p1), \
        orient(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return (o1 == 0 and on(p1, p2, q1)) or (o2 == 0 and on(p1, p2, q2)) or \
        (o3 == 0 and on(q1, q2, p1)) or (o4 == 0 and on(q1, q2, p2))


class Polygon(Shape):
    """A simple polygon from its vertices (either orientation; not closed by repeating the
    first vertex)."""
    kind = "polygon"

    def __init__(self, name: str, vertices, key: str):
        self.name, self.dim = name, 2
        try:
            verts = [_vec(v, 2, f"{key}.vertices[{i}]") for i, v in enumerate(vertices)]
        except TypeError:
            raise GeometryError(f"{key}.vertices: a list of [x, y] points") from None
        if len(verts) >= 2 and verts[0] == verts[-1]:
            verts = verts[:-1]
        if len(verts) < 3:
            raise GeometryError(f"{key}.vertices: a polygon needs at least 3 distinct vertices")
        n = len(verts)
        area = 0.5 * sum(verts[i][0] * verts[(i + 1) % n][1] - verts[(i + 1) % n][0]
                         * verts[i][1] for i in range(n))
        for i in range(n):
            a, b = verts[i], verts[(i + 1) % n]
            if a == b:
                raise GeometryError(f"{key}.vertices: vertex {i} repeats vertex {(i + 1) % n}")
            for j in range(i + 1, n):
                if j == i or (j + 1) % n == i or j == (i + 1) % n:
                    continue  # adjacent edges share a vertex
                c, d = verts[j], verts[(j + 1) % n]
                if _segments_cross(a, b, c, d):
                    raise GeometryError(f"{key}: the polygon crosses itself (edge {i} "
                                        f"{list(a)}-{list(b)} meets edge {j} {list(c)}-"
                                        f"{list(d)})")
        if abs(area) < 1e-14:
            raise GeometryError(f"{key}.vertices: the polygon has no area")
        self.vertices = verts if area > 0 else verts[::-1]  # counter-clockwise
        self.area = abs(area)

    def _edges(self, like: Tensor) -> Tuple[Tensor, Tensor]:
        v = like.new_tensor(self.vertices)  # (n, 2)
        return v, torch.roll(v, -1, dims=0)

    def level(self, p: Tensor) -> Tensor:
        a, b = self._edges(p)  # (n, 2) each
        ab = b - a
        ap = p[:, None, :] - a[None]  # (N, n, 2)
        h = ((ap * ab).sum(-1) / (ab * ab).sum(-1)).clamp(0, 1)
        dist = (ap - h[..., None] * ab).norm(dim=-1).min(dim=1).values  # (N,)
        # Crossing number of a ray towards +x: inside when odd.
        y = p[:, 1:2]
        ay, by = a[None, :, 1], b[None, :, 1]
        straddle = (ay > y) != (by > y)
        x_cross = a[None, :, 0] + (y - ay) / torch.where(by == ay, torch.ones_like(by),
                                                         by - ay) * (b[None, :, 0] - a[None, :, 0])
        crossings = (straddle & (p[:, :1] < x_cross)).sum(dim=1)
        return torch.where(crossings % 2 == 1, -dist, dist)

    @property
    def bbox(self) -> Bounds:
        xs, ys = zip(*self.vertices)
        return (min(xs), min(ys)), (max(xs), max(ys))

    def _pieces(self) -> List[Piece]:
        v = torch.tensor(self.vertices, dtype=torch.float64)
        w = torch.roll(v, -1, dims=0)
        lengths = (w - v).norm(dim=1)
        cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(lengths, 0)])
        total = float(cum[-1])
        edge = w - v
        normals = torch.stack([edge[:, 1], -edge[:, 0]], dim=1) / lengths[:, None]

        def draw(u: Tensor) -> Tuple[Tensor, Tensor]:
            s = u[:, 0] * total
            i = (torch.searchsorted(cum, s, right=True) - 1).clamp(0, len(lengths) - 1)
            h = (s - cum[i]) / lengths[i]
            return v[i] + h[:, None] * edge[i], normals[i]
        edges = [segment_distance(self.vertices[i], self.vertices[(i + 1) % len(self.vertices)])
                 for i in range(len(self.vertices))]

        def phi(p: Tensor) -> Tensor:
            return r_equivalence([e(p) for e in edges])
        return [Piece(self.name, self.name, total, draw, phi)]


# -- 3-D ---------------------------------------------------------------------------------------

class Cuboid(Rectangle):
    kind = "box"
    DIM = 3
    FACES = tuple((f"{a}_{'max' if up else 'min'}", i, up) for i, a in enumerate("xyz")
                  for up in (False, True))

    def _pieces(self) -> List[Piece]:
        out = []
        for face, axis, up in self.FACES:
            area = 1.0
            for j in range(3):
                if j != axis:
                    area *= self.upper[j] - self.lower[j]
            out.append(Piece(f"{self.name}.{face}", self.name, area,
                             _rectangle_face(self.lower, self.upper, axis, up),
                             face_distance(self.lower, self.upper, axis, up)))
        return out


class Sphere(Disk):
    kind = "sphere"
    DIM = 3

    def _pieces(self) -> List[Piece]:
        c = torch.tensor(self.center, dtype=torch.float64)

        def draw(u: Tensor) -> Tuple[Tensor, Tensor]:  # Archimedes: z uniform, angle uniform
            z = 1 - 2 * u[:, 0]
            ph = 2 * math.pi * u[:, 1]
            rho = torch.sqrt((1 - z * z).clamp(min=0))
            n = torch.stack([rho * torch.cos(ph), rho * torch.sin(ph), z], dim=1)
            return c + self.radius * n, n

        def phi(p: Tensor) -> Tensor:  # (r^2 - |p - c|^2) / 2r: > 0 inside
            return _ball_trim(p, self.center, self.radius)
        return [Piece(self.name, self.name, 4 * math.pi * self.radius ** 2, draw, phi, True)]


class Cylinder(Shape):
    """A solid circular cylinder along ``axis`` (x, y or z): its base center, radius, height."""
    kind = "cylinder"

    def __init__(self, name: str, base, radius, height, axis: str, key: str):
        self.name, self.dim = name, 3
        self.base = _vec(base, 3, f"{key}.base")
        self.radius = _positive(radius, f"{key}.radius")
        self.height = _positive(height, f"{key}.height")
        if axis not in ("x", "y", "z"):
            raise GeometryError(f"{key}.axis={axis!r} is not allowed: one of x, y, z")
        self.axis = "xyz".index(axis)
        self.across = [j for j in range(3) if j != self.axis]

    def level(self, p: Tensor) -> Tensor:
        q = p - p.new_tensor(self.base)
        radial = q[:, self.across].norm(dim=1) - self.radius
        along = torch.maximum(-q[:, self.axis], q[:, self.axis] - self.height)
        outside = torch.stack([radial.clamp(min=0), along.clamp(min=0)], dim=1).norm(dim=1)
        return torch.where(outside > 0, outside, torch.maximum(radial, along))

    @property
    def bbox(self) -> Bounds:
        lo, hi = list(self.base), list(self.base)
        for j in self.across:
            lo[j] -= self.radius
            hi[j] += self.radius
        hi[self.axis] += self.height
        return tuple(lo), tuple(hi)

    def _place(self, along: Tensor, c0: Tensor, c1: Tensor) -> Tensor:
        p = torch.empty(along.shape[0], 3, dtype=torch.float64)
        p[:, self.axis] = self.base[self.axis] + along
        p[:, self.across[0]] = self.base[self.across[0]] + c0
        p[:, self.across[1]] = self.base[self.across[1]] + c1
        return p

    def _pieces(self) -> List[Piece]:
        r, h = self.radius, self.height

        def side(u: Tensor) -> Tuple[Tensor, Tensor]:
            ph = 2 * math.pi * u[:, 0]
            p = self._place(h * u[:, 1], r * torch.cos(ph), r * torch.sin(ph))
            n = torch.zeros_like(p)
            n[:, self.across[0]], n[:, self.across[1]] = torch.cos(ph), torch.sin(ph)
            return p, n

        def cap(top: bool):
            def draw(u: Tensor) -> Tuple[Tensor, Tensor]:
                rho, ph = r * torch.sqrt(u[:, 0]), 2 * math.pi * u[:, 1]
                p = self._place(torch.full_like(rho, h if top else 0.0), rho * torch.cos(ph),
                                rho * torch.sin(ph))
                n = torch.zeros_like(p)
                n[:, self.axis] = 1.0 if top else -1.0
                return p, n
            return draw
        def radial(p: Tensor) -> Tensor:  # (r^2 - rho^2) / 2r, rho the distance to the axis
            q = p[:, self.across] - p.new_tensor([self.base[j] for j in self.across])
            return (r * r - q.square().sum(1)) / (2 * r)

        def along(p: Tensor) -> Tensor:  # the height above the base
            return p[:, self.axis] - self.base[self.axis]

        def side_phi(p: Tensor) -> Tensor:  # the side, trimmed to the slab between the caps
            a = along(p)
            return trimmed(radial(p), a * (h - a) / h)

        def cap_phi(top: bool):
            def phi(p: Tensor) -> Tensor:  # a cap's plane, trimmed to the cap's disk
                return trimmed(h - along(p) if top else along(p), radial(p))
            return phi
        return [Piece(f"{self.name}.side", self.name, 2 * math.pi * r * h, side, side_phi),
                Piece(f"{self.name}.bottom", self.name, math.pi * r * r, cap(False),
                      cap_phi(False)),
                Piece(f"{self.name}.top", self.name, math.pi * r * r, cap(True), cap_phi(True))]


__all__ = ["GeometryError", "Piece", "Shape", "Rectangle", "Disk", "Ellipse", "Polygon",
           "Cuboid", "Sphere", "Cylinder", "trimmed", "segment_distance", "face_distance"]
