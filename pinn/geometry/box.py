"""Axis-aligned boxes in space (interval, rectangle, cuboid) times an optional time interval.

A :class:`Domain` knows its axes (:class:`pinn.coords.Axes`), the bounds of each, its faces
and which space axes are periodic; it maps unit-cube draws onto itself and knows nothing of
conditions or networks. Points are (N, d) tensors, the axes' columns in order (space, then t).

Faces are named ``<axis>_min`` and ``<axis>_max`` (``x_min``, ``y_max``, ...); on an interval
``left`` and ``right`` name the ends of x, and on a rectangle ``left``, ``right``, ``bottom``,
``top`` name x_min, x_max, y_min, y_max. A face's outward unit normal is -e or +e along its
axis. Time is not a face: t_min carries the initial condition and t_max nothing.

Boundary points come in pairs: the points drawn for the two faces of one axis share every
other coordinate (rows [:m] on the lower face, [m:] on the upper one), so that a periodic
condition can compare the two faces point by point and the faces of one axis count as one set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch

from pinn.coords import Axes, CoordinateError

# The other names of faces, by the number of space axes.
FACE_ALIASES: Dict[int, Dict[str, str]] = {
    1: {"left": "x_min", "right": "x_max"},
    2: {"left": "x_min", "right": "x_max", "bottom": "y_min", "top": "y_max"},
    3: {},
}


@dataclass(frozen=True)
class Face:
    """One face of the box: the space axis it is normal to (its column) and its side."""

    name: str  # canonical: x_min, y_max, ...
    axis: int  # column of the axis the face is normal to
    upper: bool  # the face at the axis' upper bound (outward normal +e) or lower (-e)

    @property
    def sign(self) -> float:
        """The outward normal's component along :attr:`axis`."""
        return 1.0 if self.upper else -1.0


class Domain:
    """A box in space, times a time interval when the axes have t.

    Args:
        axes: the problem's axes.
        bounds: (lower, upper) per axis, in the axes' order.
        periodic: names of the space axes whose two faces are identified.

    Raises:
        CoordinateError: bounds missing, not finite, or empty; a periodic axis that is not a
            space axis of the domain; all one line, naming ``pde.domain``.
    """

    def __init__(self, axes: Axes, bounds: Sequence[Tuple[float, float]],
                 periodic: Sequence[str] = (), key: str = "pde.domain"):
        self.axes = axes
        if len(bounds) != axes.dim:
            raise CoordinateError(f"{key}: {len(bounds)} interval(s) for the {axes.dim} axes "
                                  f"{', '.join(axes.names)}")
        self.lower = tuple(float(lo) for lo, _ in bounds)
        self.upper = tuple(float(hi) for _, hi in bounds)
        for name, lo, hi in zip(axes.names, self.lower, self.upper):
            if not (abs(lo) < float("inf") and abs(hi) < float("inf") and hi > lo):
                raise CoordinateError(f"{key}.{name}=[{lo:g}, {hi:g}] is not allowed: finite "
                                      "bounds with the upper above the lower")
        for name in periodic:
            if name not in axes.space:
                raise CoordinateError(f"pde.periodic: {name!r} is not a space axis of this "
                                      f"problem ({', '.join(axes.space)})")
        self.periodic = tuple(a for a in axes.space if a in periodic)
        self.faces: Dict[str, Face] = {}
        for i, a in enumerate(axes.space):
            for upper in (False, True):
                name = f"{a}_{'max' if upper else 'min'}"
                self.faces[name] = Face(name, i, upper)

    # -- names ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.axes.dim

    @property
    def time(self) -> Optional[Tuple[float, float]]:
        """(t_min, t_max), or None for a steady problem."""
        return (self.lower[-1], self.upper[-1]) if self.axes.time else None

    def bounds(self, name: str) -> Tuple[float, float]:
        i = self.axes.index(name)
        return self.lower[i], self.upper[i]

    def face(self, name: str, key: str = "pde.conditions") -> Face:
        """The face called ``name`` (canonical or alias).

        Raises:
            CoordinateError: no such face; the message lists the faces.
        """
        canonical = FACE_ALIASES[len(self.axes.space)].get(name, name)
        if canonical not in self.faces:
            raise CoordinateError(f"{key}.{name}: no such face; the faces are "
                                  f"{', '.join(self.face_names())}")
        return self.faces[canonical]

    def face_names(self) -> Tuple[str, ...]:
        """Every face, by the names a user writes (aliases where there are, else canonical)."""
        back = {v: k for k, v in FACE_ALIASES[len(self.axes.space)].items()}
        return tuple(back.get(n, n) for n in self.faces)

    def display(self, face: Face) -> str:
        """The name a user wrote for ``face`` (its alias where it has one)."""
        back = {v: k for k, v in FACE_ALIASES[len(self.axes.space)].items()}
        return back.get(face.name, face.name)

    # -- sizes ----------------------------------------------------------------------------
    def span(self, i: int) -> float:
        return self.upper[i] - self.lower[i]

    def face_measure(self, axis: int) -> float:
        """The (d_space - 1)-volume of one face normal to space axis ``axis`` times the time
        span (1 for an interval's ends in a steady problem)."""
        out = 1.0
        for j in range(self.dim):
            if j != axis:
                out *= self.span(j)
        return out

    def boundary_split(self, n: int) -> Tuple[int, ...]:
        """Pairs of boundary points per space axis for ``n`` boundary points in all: in
        proportion to the faces' measures (uniform density on the boundary), at least one pair
        per axis when ``n`` allows; an odd remainder is dropped (``n // 2`` pairs)."""
        pairs = n // 2
        k = len(self.axes.space)
        if k == 1 or pairs == 0:
            return (pairs,) + (0,) * (k - 1)
        measures = [self.face_measure(i) for i in range(k)]
        total = sum(measures)
        share = [pairs * m / total for m in measures]
        out = [int(s) for s in share]
        # Largest remainders first, so the counts add up to ``pairs`` exactly.
        for i in sorted(range(k), key=lambda i: out[i] - share[i])[: pairs - sum(out)]:
            out[i] += 1
        return tuple(out)

    # -- mapping unit draws -----------------------------------------------------------------
    def scale(self, unit: torch.Tensor, columns: Sequence[int]) -> torch.Tensor:
        """Unit draws (n, len(columns)) onto the bounds of ``columns``: lower + span * u,
        column by column (float64)."""
        cols = [self.lower[j] + self.span(j) * unit[:, k : k + 1] for k, j in enumerate(columns)]
        return torch.cat(cols, dim=1) if cols else unit.new_zeros(unit.shape[0], 0)

    def interior(self, unit: torch.Tensor) -> torch.Tensor:
        """Unit draws (n, d) -> points (n, d) in the box (and time interval)."""
        return self.scale(unit, range(self.dim))

    def initial(self, unit: torch.Tensor) -> torch.Tensor:
        """Unit draws (n, d - 1) over space -> points (n, d) at t = t_min."""
        space = self.scale(unit, range(self.dim - 1))
        t0 = torch.full_like(space[:, :1], self.lower[-1])
        return torch.cat([space, t0], dim=1)

    def face_pair(self, axis: int, unit: torch.Tensor) -> torch.Tensor:
        """Unit draws (m, d - 1) over the other coordinates -> (2m, d): rows [:m] on the lower
        face of space axis ``axis``, rows [m:] on the upper face, the same other coordinates."""
        others = [j for j in range(self.dim) if j != axis]
        rest = self.scale(unit, others)  # (m, d - 1)
        lo = unit.new_full((unit.shape[0], 1), self.lower[axis])
        hi = unit.new_full((unit.shape[0], 1), self.upper[axis])
        cols_lo = [rest[:, k : k + 1] for k in range(len(others))]
        cols_lo.insert(axis, lo)
        cols_hi = [rest[:, k : k + 1] for k in range(len(others))]
        cols_hi.insert(axis, hi)
        return torch.cat([torch.cat(cols_lo, dim=1), torch.cat(cols_hi, dim=1)])

    def inside(self, points: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
        """Whether each point (N, d) lies in the closed box (within ``tol``); (N,) bool."""
        lo = torch.tensor(self.lower, dtype=points.dtype, device=points.device) - tol
        hi = torch.tensor(self.upper, dtype=points.dtype, device=points.device) + tol
        return ((points >= lo) & (points <= hi)).all(dim=1)

    def describe(self) -> str:
        """``x in [0, 1], y in [0, 1], t in [0, 1]``."""
        return ", ".join(f"{n} in [{lo:g}, {hi:g}]"
                         for n, lo, hi in zip(self.axes.names, self.lower, self.upper))


__all__ = ["Domain", "Face", "FACE_ALIASES"]
