"""The coordinates of a problem and the vocabulary of its derivatives.

A problem declares its axes: one to three space axes, in the order ``x, y, z`` (a subset of
them, keeping that order), and optionally time ``t``, always last. Points travel as (N, d)
tensors whose columns are the axes in that order.

A derivative is named as in residual expressions: the output, an underscore and one letter per
differentiation, ``u_x``, ``u_xy``, ``v_xxxx``, ``p_t``; the letters may come in any order
(``u_yx`` is ``u_xy``) and a key is normalized to the axes' order. Inside, a derivative is an
output index and a *multi-index*: how many times it is differentiated along each axis
(``u_xxy`` on axes (x, y, t) -> (0, (2, 1, 0))). Up to :data:`MAX_ORDER` differentiations
along one axis and in all.

Problems on (x, t) also have the older, fixed vocabulary :data:`DERIVATIVE_KEYS` (U, Ux, Ut,
Uxx, Utt; every output at once), which :mod:`pinn.derivatives` and the taylor engine speak.

Nothing here computes; :mod:`pinn.derivatives_nd` does, from these keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

SPACE_AXES = ("x", "y", "z")
TIME_AXIS = "t"
MAX_ORDER = 4  # differentiations along one axis, and in all (u_xxxx for Kuramoto-Sivashinsky)

MultiIndex = Tuple[int, ...]

# The (x, t) vocabulary: the value and the first and pure second derivatives along x and t,
# each key standing for all outputs at once ((N, n_out) tensors).
DERIVATIVE_KEYS = ("U", "Ux", "Ut", "Uxx", "Utt")


class CoordinateError(ValueError):
    """An axis or a derivative that the problem's coordinates do not allow; one line."""


@dataclass(frozen=True)
class Axes:
    """The axes of a problem: ``space`` (a subsequence of x, y, z) and whether time is one.

    Attributes:
        space: the space axes in order, e.g. ``("x",)`` or ``("x", "y")``.
        time: whether ``t`` is an axis (the last column); a problem without it is steady.
    """

    space: Tuple[str, ...]
    time: bool = True

    @staticmethod
    def parse(names: Sequence[str], key: str = "pde.axes") -> "Axes":
        """Axes from their names, e.g. ``["x", "y", "t"]``.

        Raises:
            CoordinateError: an unknown or repeated axis, no space axis, space axes out of the
                order x, y, z, or t not last.
        """
        names = [str(n) for n in names]
        allowed = (*SPACE_AXES, TIME_AXIS)
        for n in names:
            if n not in allowed:
                raise CoordinateError(f"{key}: {n!r} is not an axis: one of "
                                      f"{', '.join(allowed)}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise CoordinateError(f"{key}: the axis {repeated[0]} is given twice")
        time = TIME_AXIS in names
        if time and names[-1] != TIME_AXIS:
            raise CoordinateError(f"{key}: t must be the last axis, as in {names[:-1] or ['x']} "
                                  "+ [t]")
        space = tuple(n for n in names if n != TIME_AXIS)
        if not space:
            raise CoordinateError(f"{key}: at least one space axis (x, y, z) is needed")
        if list(space) != [a for a in SPACE_AXES if a in space]:
            raise CoordinateError(f"{key}: space axes go in the order x, y, z; got "
                                  f"{', '.join(space)}")
        return Axes(space, time)

    @property
    def names(self) -> Tuple[str, ...]:
        """All axes in column order (space, then t)."""
        return (*self.space, TIME_AXIS) if self.time else self.space

    @property
    def dim(self) -> int:
        """Columns of a point: space axes plus one for time."""
        return len(self.names)

    def index(self, name: str) -> int:
        """The column of axis ``name``."""
        if name not in self.names:
            raise CoordinateError(f"{name!r} is not an axis of this problem "
                                  f"({', '.join(self.names)})")
        return self.names.index(name)

    def multi_index(self, letters: str, key: str) -> MultiIndex:
        """How many times ``letters`` (e.g. ``"xxy"``) differentiate along each axis.

        Raises:
            CoordinateError: a letter that is not an axis (a time derivative in a steady
                problem among them), or more than :data:`MAX_ORDER` differentiations.
        """
        counts = [0] * self.dim
        for ch in letters:
            if ch not in self.names:
                if ch == TIME_AXIS:
                    raise CoordinateError(f"{key}: a time derivative in a steady problem (its "
                                          f"axes are {', '.join(self.names)})")
                raise CoordinateError(f"{key}: {ch!r} is not an axis of this problem (its axes "
                                      f"are {', '.join(self.names)})")
            counts[self.names.index(ch)] += 1
        if sum(counts) > MAX_ORDER:
            raise CoordinateError(f"{key}: order {sum(counts)} is above the highest allowed, "
                                  f"{MAX_ORDER}")
        return tuple(counts)

    def letters(self, alpha: MultiIndex) -> str:
        """The letters of a multi-index in the axes' order: (2, 1, 0) -> ``"xxy"``."""
        return "".join(name * k for name, k in zip(self.names, alpha))

    def laplacian(self) -> Tuple[MultiIndex, ...]:
        """The second partials that a Laplacian over the space axes sums."""
        out = []
        for i in range(len(self.space)):
            alpha = [0] * self.dim
            alpha[i] = 2
            out.append(tuple(alpha))
        return tuple(out)


@dataclass(frozen=True)
class Derivative:
    """One field a residual reads: output ``output`` (its column) differentiated by ``alpha``."""

    output: int
    alpha: MultiIndex

    @property
    def order(self) -> int:
        return sum(self.alpha)


def parse_key(key: str, outputs: Sequence[str], axes: Axes) -> Derivative:
    """The derivative that a name such as ``u_xxy`` stands for.

    Args:
        key: an output name alone (the value), or ``<output>_<axis letters>``.
        outputs: the problem's output names.
        axes: the problem's axes.

    Raises:
        CoordinateError: an unknown output, an axis the problem does not have, an order above
            :data:`MAX_ORDER`.
    """
    if key in outputs:
        return Derivative(list(outputs).index(key), (0,) * axes.dim)
    name, sep, letters = key.rpartition("_")
    if not sep or name not in outputs or not letters:
        raise CoordinateError(f"{key!r} is not a derivative of the outputs "
                              f"{', '.join(outputs)} (write <output>_<axes>, e.g. "
                              f"{outputs[0]}_{axes.names[0]})")
    return Derivative(list(outputs).index(name), axes.multi_index(letters, key))


def key_of(d: Derivative, outputs: Sequence[str], axes: Axes) -> str:
    """The normalized name of a derivative: ``u``, ``u_xy`` (letters in the axes' order)."""
    letters = axes.letters(d.alpha)
    return outputs[d.output] + (f"_{letters}" if letters else "")


def closure(alphas: Iterable[MultiIndex]) -> Tuple[MultiIndex, ...]:
    """Every multi-index on the way to ``alphas``, lowest order first: differentiating once
    more along one axis at a time, a derivative needs one of its predecessors. The path taken
    to ``alpha`` lowers its last axis with a nonzero count first (so u_xxy comes from u_xx, and
    u_xx, u_xy share u_x); the result is closed: every member's predecessor is a member."""
    out: Dict[MultiIndex, None] = {}
    for alpha in alphas:
        path = []
        a = list(alpha)
        while sum(a) > 0:
            path.append(tuple(a))
            last = max(i for i, k in enumerate(a) if k)
            a[last] -= 1
        path.append(tuple(a))
        for p in reversed(path):
            out.setdefault(p, None)
    return tuple(sorted(out, key=lambda a: (sum(a), tuple(-k for k in a))))


def predecessor(alpha: MultiIndex) -> Tuple[MultiIndex, int]:
    """The multi-index ``alpha`` is one differentiation away from, and the axis of that step
    (the rule of :func:`closure`)."""
    last = max(i for i, k in enumerate(alpha) if k)
    prev = list(alpha)
    prev[last] -= 1
    return tuple(prev), last


# The 1-D public API's names of the derivatives on two input columns (x, t).
LEGACY_KEYS = {(0, 0): "U", (1, 0): "Ux", (0, 1): "Ut", (2, 0): "Uxx", (0, 2): "Utt"}


def legacy_key(d: Derivative) -> Optional[str]:
    """The 1-D name (``U``, ``Ux``, ``Utt``, ...) of a derivative on two input columns, or None
    where it has none (mixed, third order and up, other dimensions)."""
    return LEGACY_KEYS.get(d.alpha) if len(d.alpha) == 2 else None
