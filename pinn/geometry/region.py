"""A domain made of shapes (:mod:`pinn.geometry.csg`) times an optional time interval.

A :class:`Region` has the interface of a box (:class:`pinn.geometry.box.Domain`) where the
rest of the project reads one -- axes, the bounding box as ``lower``/``upper`` (network input
scaling, evaluation grids), ``time``, no periodic axes -- and draws its own points:

* interior points uniform in the region: unit draws over the bounding box (and time) kept
  where the region's level is negative, drawn until the requested count is reached exactly;
* boundary points uniform by length (2-D) or area (3-D) on each named piece, with the exact
  outward unit normals of the region. A point of a primitive's piece is on the region's
  boundary when the region lies on its inner side and not on its outer side: level(p - h n)
  < 0 < level(p + h n) with h a 1e-7 fraction of the bounding box. This drops the parts of a
  piece inside another shape and the parts that coincide with a removed shape's face.

A piece's measure in the region (length or area of the part kept) and the region's area or
volume are estimated once from 2^14 (pieces) and 2^16 (area) unscrambled Sobol points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from pinn.coords import Axes
from pinn.geometry.shapes import GeometryError, Piece, Shape

UnitDraw = Callable[[int], Tensor]  # m -> (m, columns) in [0, 1), float64


def _midpoints(unit: Tensor) -> Tensor:
    """Sobol points shifted by half a cell, off the corners and edges of the unit cube."""
    return (unit + 0.5 / unit.shape[0]) % 1.0


@dataclass(frozen=True)
class RegionPiece:
    """A piece of the region's boundary: the primitive's piece, whether the region's outward
    normal is its opposite (``flip``), the fraction of it that lies on the region's boundary
    and its measure there."""

    piece: Piece
    flip: bool
    fraction: float
    measure: float

    @property
    def name(self) -> str:
        return self.piece.name

    @property
    def shape(self) -> str:
        return self.piece.shape


class Region:
    """Shapes in space (2-D or 3-D) times an optional time interval.

    Args:
        axes: the problem's axes (2 or 3 space axes, matching the shape).
        shape: the space part.
        time: (t_min, t_max) when the axes have t.

    Raises:
        GeometryError: a shape of another dimension; a region with no interior (the set
            operations leave nothing); a shape whose boundary lies nowhere on the region's
            (a hole that does not meet the domain, a shape inside another of a union).
    """

    periodic: Tuple[str, ...] = ()
    faces: Dict[str, object] = {}
    exact = True  # pieces with quadrature and distance functions (a point cloud has neither)
    has_normals = True

    def __init__(self, axes: Axes, shape: Shape, time: Optional[Tuple[float, float]] = None,
                 key: str = "pde.geometry"):
        k = len(axes.space)
        if shape.dim != k:
            raise GeometryError(f"{key}: a {shape.dim}-D shape for the {k} space axes "
                                f"{', '.join(axes.space)}")
        if axes.time != (time is not None):
            raise GeometryError(f"{key}: the time interval must be given exactly when t is "
                                "an axis")
        self.axes, self.shape, self.key = axes, shape, key
        lo, hi = shape.bbox
        if not all(h > lo_ for lo_, h in zip(lo, hi)):
            raise GeometryError(f"{key}: the set operations leave an empty domain")
        self.lower = tuple(float(v) for v in lo) + ((float(time[0]),) if time else ())
        self.upper = tuple(float(v) for v in hi) + ((float(time[1]),) if time else ())
        self.k = k
        self.h = 1e-7 * max(h - lo_ for lo_, h in zip(lo, hi))
        unit = _midpoints(SobolEngine(k, scramble=False).draw(1 << 16, dtype=torch.float64))
        self.fraction = float((self.shape.level(self._box(unit)) < 0).double().mean())
        if self.fraction == 0.0:
            raise GeometryError(f"{key}: the set operations leave an empty domain")
        self.volume = self.fraction * math.prod(h - lo_ for lo_, h in zip(lo, hi))
        self.pieces: List[RegionPiece] = []
        kept_by_shape: Dict[str, float] = {}
        for piece, flip in shape.pieces:
            u = _midpoints(SobolEngine(max(k - 1, 1), scramble=False).draw(1 << 14,
                                                                           dtype=torch.float64))
            p, n = piece.draw(u[:, : k - 1])
            frac = float(self._keep(p, -n if flip else n).double().mean())
            kept_by_shape[piece.shape] = kept_by_shape.get(piece.shape, 0.0) + frac
            if frac > 0:
                self.pieces.append(RegionPiece(piece, flip, frac, frac * piece.measure))
        for s in shape.shapes:
            if kept_by_shape.get(s.name, 0.0) == 0.0:
                raise GeometryError(f"{key}: the boundary of {s.name} lies nowhere on the "
                                    "domain's boundary (a hole that does not meet the domain, or "
                                    "a shape inside another); remove it")

    # -- the box interface --------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.axes.dim

    @property
    def time(self) -> Optional[Tuple[float, float]]:
        return (self.lower[-1], self.upper[-1]) if self.axes.time else None

    def bounds(self, name: str) -> Tuple[float, float]:
        i = self.axes.index(name)
        return self.lower[i], self.upper[i]

    def describe(self) -> str:
        box = ", ".join(f"{n} in [{lo:g}, {hi:g}]"
                        for n, lo, hi in zip(self.axes.names, self.lower, self.upper))
        return f"{box} (bounding box; {self.k}-D volume {self.volume:.4g})"

    # -- names --------------------------------------------------------------------------
    def piece_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.pieces)

    def select(self, name: str) -> List[int]:
        """The pieces a condition names: a piece (``plate.left``, ``hole``) or every piece of a
        shape (``plate``); [] when nothing on the boundary has that name."""
        exact = [i for i, p in enumerate(self.pieces) if p.name == name]
        return exact or [i for i, p in enumerate(self.pieces) if p.shape == name]

    # -- tests --------------------------------------------------------------------------
    def level(self, space: Tensor) -> Tensor:
        """The region's level at space points (N, k): < 0 inside, > 0 outside."""
        return self.shape.level(space)

    def inside(self, points: Tensor, tol: float = 0.0) -> Tensor:
        """Whether each point (N, d) (time columns ignored) lies in the closed region (within
        ``tol``); (N,) bool."""
        return self.shape.level(points[:, : self.k].double()) <= tol

    def _keep(self, p: Tensor, normal: Tensor) -> Tensor:
        inner = self.shape.level(p - self.h * normal)
        outer = self.shape.level(p + self.h * normal)
        return (inner < 0) & (outer > 0)

    def _box(self, unit: Tensor) -> Tensor:  # (m, k) unit -> the space bounding box
        lo = unit.new_tensor(self.lower[: self.k])
        hi = unit.new_tensor(self.upper[: self.k])
        return lo + unit * (hi - lo)

    def _time(self, unit: Tensor) -> Tensor:  # (m, 1) unit -> t
        t0, t1 = self.time
        return t0 + unit * (t1 - t0)

    # -- draws (exact counts by rejection) ----------------------------------------------
    @staticmethod
    def _fill(n: int, rate: float, draw: Callable[[int], Tuple[Tensor, ...]]
              ) -> Tuple[Tensor, ...]:
        """``n`` rows of accepted draws: ``draw(m)`` gives (accepted rows..., ) from m
        candidates; batches sized from the expected acceptance ``rate``."""
        parts: List[Tuple[Tensor, ...]] = []
        got, tries = 0, 0
        while got < n:
            m = int(math.ceil((n - got) / max(rate, 1e-3) * 1.1)) + 16
            rows = draw(m)
            parts.append(rows)
            got += rows[0].shape[0]
            tries += 1
            if tries > 1000:
                raise GeometryError(f"{'pde.geometry'}: could not draw {n} points")
        return tuple(torch.cat([r[i] for r in parts])[:n] for i in range(len(parts[0])))

    def interior(self, n: int, unit: UnitDraw) -> Tensor:
        """``n`` points (n, d) uniform in the region (and time interval); ``unit(m)`` gives
        (m, d) unit draws."""
        if n == 0:
            return torch.zeros(0, self.dim, dtype=torch.float64)

        def draw(m: int):
            u = unit(m)
            space = self._box(u[:, : self.k])
            keep = self.shape.level(space) < 0
            cols = [space[keep]] + ([self._time(u[keep][:, self.k:])] if self.axes.time else [])
            return (torch.cat(cols, dim=1),)
        return self._fill(n, self.fraction, draw)[0]

    def initial(self, n: int, unit: UnitDraw) -> Tensor:
        """``n`` points (n, d) uniform in the region at t = t_min; ``unit(m)``: (m, k)."""
        space = self.interior_space(n, unit)
        return torch.cat([space, space.new_full((n, 1), self.lower[-1])], dim=1)

    def interior_space(self, n: int, unit: UnitDraw) -> Tensor:
        def draw(m: int):
            space = self._box(unit(m))
            return (space[self.shape.level(space) < 0],)
        return self._fill(n, self.fraction, draw)[0] if n else \
            torch.zeros(0, self.k, dtype=torch.float64)

    def boundary(self, j: int, n: int, unit: UnitDraw) -> Tuple[Tensor, Tensor]:
        """``n`` points (n, d) uniform on piece ``j`` (times the time interval) and the
        region's outward unit normals there (n, k); ``unit(m)``: (m, k - 1 [+ 1 for t])."""
        rp = self.pieces[j]
        if n == 0:
            return (torch.zeros(0, self.dim, dtype=torch.float64),
                    torch.zeros(0, self.k, dtype=torch.float64))

        def draw(m: int):
            u = unit(m)
            p, normal = rp.piece.draw(u[:, : self.k - 1])
            if rp.flip:
                normal = -normal
            keep = self._keep(p, normal)
            cols = [p[keep]] + ([self._time(u[keep][:, self.k - 1:])] if self.axes.time else [])
            return torch.cat(cols, dim=1), normal[keep]
        return self._fill(n, rp.fraction, draw)

    def unit_columns(self) -> Dict[str, int]:
        """Columns of the unit draws of each set: ``int``, ``ic`` and ``piece<j>``."""
        t = 1 if self.axes.time else 0
        out = {"int": self.dim, "ic": self.k}
        out.update({f"piece{j}": self.k - 1 + t for j in range(len(self.pieces))})
        return out

    def boundary_split(self, n: int) -> Tuple[int, ...]:
        """Boundary points per piece for ``n`` in all: in proportion to the pieces' measures
        times their shapes' densities (the time span is alike for all), at least one per piece
        when ``n`` allows."""
        k = len(self.pieces)
        if n == 0 or k == 0:
            return (0,) * k
        measures = [p.measure * self.shape.density_of(p.shape) for p in self.pieces]
        total = sum(measures)
        floor = 1 if n >= k else 0
        rest = n - floor * k
        share = [rest * m / total for m in measures]
        out = [int(s) for s in share]
        for i in sorted(range(k), key=lambda i: out[i] - share[i])[: rest - sum(out)]:
            out[i] += 1
        return tuple(o + floor for o in out)


__all__ = ["Region", "RegionPiece"]
