"""A domain given by point files produced elsewhere (a mesher, a CAD export): interior points,
and boundary points with their outward normals and the piece each belongs to.

.. code-block:: yaml

    geometry:
      points:
        interior: plate_interior.txt     # columns: the space axes (x y [z])
        boundary: plate_boundary.txt     # x y [z], then n_x n_y [n_z] (optional), then a
                                         # piece id (optional)
        pieces: {1: inlet, 2: walls}     # piece ids -> names (default: piece<id>, or
                                         # boundary when the file has no id column)

Files are whitespace-separated text with ``%`` or ``#`` comment lines, or ``.csv``. Training
points are drawn from the files' points with replacement (the draws' first column picks the
row: quasi-random draws pick them stratified), seeded and resumable like any draw; the pieces
share the boundary points in proportion to their counts (the file's points are taken as
evenly spread). The domain is known only through its points: a grid point counts as inside
when a file point lies within 1.5 times the interior points' median nearest-neighbour spacing
(an approximation for masks and checks); integrals over pieces and distance functions are not
available on it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from pinn.coords import Axes
from pinn.geometry.region import Region, RegionPiece, UnitDraw
from pinn.geometry.shapes import GeometryError, Piece


def _read(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise GeometryError(f"{key}={path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            data = np.loadtxt(path, delimiter=",", comments=("%", "#"), ndmin=2)
        else:
            data = np.loadtxt(path, comments=("%", "#"), ndmin=2)
    except ValueError as e:
        raise GeometryError(f"{key}={path}: not a table of numbers ({str(e).splitlines()[0]})") \
            from None
    if data.size == 0:
        raise GeometryError(f"{key}={path}: no points")
    if not np.all(np.isfinite(data)):
        row = int(np.argwhere(~np.isfinite(data))[0][0])
        raise GeometryError(f"{key}={path}: a value that is not finite in row {row}")
    return data


class _Pieces:
    """Stands for the shape of a region of shapes where the code asks it for pieces."""

    def __init__(self, pieces: List[Piece]):
        self._list = pieces

    @property
    def pieces(self):
        return [(p, False) for p in self._list]

    @property
    def shapes(self):
        return []

    def density_of(self, shape: str) -> float:
        return 1.0


class PointCloud(Region):
    """See the module docstring.

    Raises:
        GeometryError: a missing or malformed file; a file with the wrong number of columns
            for the space axes; normals that are not unit vectors; a piece id without a name
            in ``pieces`` when names are given; one line naming the key.
    """

    exact = False  # no quadrature over pieces, no distance functions

    def __init__(self, axes: Axes, spec, resolve, time: Optional[Tuple[float, float]] = None,
                 key: str = "pde.geometry.points"):
        k = len(axes.space)
        self.axes, self.k, self.key = axes, k, key
        keys = [str(s) for s in spec.keys()]
        bad = [s for s in keys if s not in ("interior", "boundary", "pieces")]
        if bad or "interior" not in keys or "boundary" not in keys:
            raise GeometryError(f"{key}: give interior: <file> and boundary: <file> (and "
                                "pieces: {id: name})" + (f"; {bad[0]} is not a key" if bad else ""))
        interior = _read(resolve(str(spec["interior"])), f"{key}.interior")
        if interior.shape[1] != k:
            raise GeometryError(f"{key}.interior: {interior.shape[1]} column(s); the space axes "
                                f"{', '.join(axes.space)} need {k}")
        boundary = _read(resolve(str(spec["boundary"])), f"{key}.boundary")
        cols = boundary.shape[1]
        if cols not in (k, k + 1, 2 * k, 2 * k + 1):
            raise GeometryError(f"{key}.boundary: {cols} column(s); give {k} (the points), "
                                f"{k + 1} (and a piece id), {2 * k} (and the outward normals) or "
                                f"{2 * k + 1} (points, normals, piece id)")
        self.has_normals = cols >= 2 * k
        ids = boundary[:, -1] if cols in (k + 1, 2 * k + 1) else np.zeros(len(boundary))
        points = torch.as_tensor(boundary[:, :k], dtype=torch.float64)
        normals = (torch.as_tensor(boundary[:, k:2 * k], dtype=torch.float64)
                   if self.has_normals else torch.zeros_like(points))
        if self.has_normals:
            length = normals.norm(dim=1)
            off = torch.nonzero((length - 1).abs() > 1e-6)
            if off.numel():
                row = int(off[0])
                raise GeometryError(f"{key}.boundary: the normal in row {row} has length "
                                    f"{float(length[row]):.6g}; give outward unit normals")
        names: Dict[Any, str] = {}
        given = spec.get("pieces") or {}
        for i, n in given.items():
            if not str(n).isidentifier():
                raise GeometryError(f"{key}.pieces.{i}={n!r} is not allowed: an identifier")
            names[float(i)] = str(n)
        self.interior_points = torch.as_tensor(interior, dtype=torch.float64)
        self._rows: List[Tuple[Tensor, Tensor]] = []
        pieces: List[Piece] = []
        for i in sorted(set(ids.tolist())):
            if given and i not in names:
                raise GeometryError(f"{key}.pieces: no name for the piece id {i:g} of "
                                    f"{spec['boundary']}; give {i:g}: <name>")
            name = names.get(i) or ("boundary" if cols in (k, 2 * k) else f"piece{i:g}")
            rows = torch.as_tensor(ids == i)
            self._rows.append((points[rows], normals[rows]))
            pieces.append(Piece(name, name, float(rows.sum()), lambda u: None))
        self.shape = _Pieces(pieces)
        self.pieces = [RegionPiece(p, False, 1.0, p.measure) for p in pieces]
        every = torch.cat([self.interior_points, points])
        lo, hi = every.min(0).values.tolist(), every.max(0).values.tolist()
        self.lower = tuple(lo) + ((float(time[0]),) if time else ())
        self.upper = tuple(hi) + ((float(time[1]),) if time else ())
        self.h = 1e-7 * max(b - a for a, b in zip(lo, hi))
        self.fraction = 1.0
        self._every = every
        # The interior points' spacing: the median distance to the nearest other point (of a
        # subset of up to 4,096 of them, each its own nearest at distance 0).
        sample = self.interior_points[:4096]
        if len(self.interior_points) < 2:
            raise GeometryError(f"{key}.interior: at least 2 points")
        nearest = torch.cdist(sample, self.interior_points).topk(2, largest=False).values[:, 1]
        self.spacing = 1.5 * float(nearest.median())
        self.volume = float("nan")  # not known from points

    def describe(self) -> str:
        box = ", ".join(f"{n} in [{lo:g}, {hi:g}]"
                        for n, lo, hi in zip(self.axes.names, self.lower, self.upper))
        return (f"{box} (bounding box of {len(self.interior_points)} interior and "
                f"{sum(int(p.measure) for p in self.pieces)} boundary points)")

    def select(self, name: str) -> List[int]:
        return [i for i, p in enumerate(self.pieces) if p.name == name]

    def level(self, space: Tensor) -> Tensor:
        """Distance to the nearest file point minus the spacing: <= 0 counts as inside."""
        out = []
        for i in range(0, space.shape[0], 4096):
            d = torch.cdist(space[i:i + 4096].double(), self._every).min(dim=1).values
            out.append(d - self.spacing)
        return torch.cat(out) if out else space.new_zeros(0)

    def inside(self, points: Tensor, tol: float = 0.0) -> Tensor:
        return self.level(points[:, : self.k].double()) <= tol

    def _keep(self, p: Tensor, normal: Tensor) -> Tensor:
        return torch.ones(p.shape[0], dtype=torch.bool)

    @staticmethod
    def _pick(table: Tensor, u: Tensor) -> Tensor:  # unit draws (n,) -> rows of table
        return (u * table.shape[0]).long().clamp(max=table.shape[0] - 1)

    def interior(self, n: int, unit: UnitDraw) -> Tensor:
        if n == 0:
            return torch.zeros(0, self.dim, dtype=torch.float64)
        u = unit(n)
        space = self.interior_points[self._pick(self.interior_points, u[:, 0])]
        if self.axes.time:
            return torch.cat([space, self._time(u[:, self.k:self.k + 1])], dim=1)
        return space

    def interior_space(self, n: int, unit: UnitDraw) -> Tensor:
        if n == 0:
            return torch.zeros(0, self.k, dtype=torch.float64)
        return self.interior_points[self._pick(self.interior_points, unit(n)[:, 0])]

    def boundary(self, j: int, n: int, unit: UnitDraw) -> Tuple[Tensor, Tensor]:
        points, normals = self._rows[j]
        if n == 0:
            return (torch.zeros(0, self.dim, dtype=torch.float64),
                    torch.zeros(0, self.k, dtype=torch.float64))
        u = unit(n)
        idx = self._pick(points, u[:, 0])
        p = points[idx]
        if self.axes.time:
            p = torch.cat([p, self._time(u[:, -1:])], dim=1)
        return p, normals[idx]

    def unit_columns(self) -> Dict[str, int]:
        t = 1 if self.axes.time else 0
        out = {"int": self.dim, "ic": self.k}
        out.update({f"piece{j}": max(self.k - 1 + t, 1) for j in range(len(self.pieces))})
        return out


def cloud_spec(geometry) -> Optional[Any]:
    """The ``points`` node of a ``pde.geometry`` given by files, else None."""
    if hasattr(geometry, "keys") and "points" in [str(k) for k in geometry.keys()]:
        extra = [str(k) for k in geometry.keys() if str(k) != "points"]
        if extra:
            raise GeometryError(f"pde.geometry.{extra[0]}: not allowed beside points (a domain "
                                "from files)")
        return geometry["points"]
    return None


__all__ = ["PointCloud", "cloud_spec"]
