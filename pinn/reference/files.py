"""Reference solutions from data files, for problems in any dimension.

A problem names its axes (e.g. ``("x", "y")`` or ``("x", "y", "t")``, see :mod:`pinn.coords`)
and its outputs (e.g. ``("u", "v", "p")``); a reference file gives the outputs at scattered
nodes, and the error of a run is the relative L2 at those nodes (:func:`relative_l2`).

Formats, by suffix:

- ``.csv``: comma-separated numbers, optionally below one header row of names (the first row
  is the header when none of its fields is a number).
- ``.npz``: arrays named by the axes and outputs, or a single 2-D array (a table).
- ``.mat``: MATLAB variables named by the axes and outputs, or a single 2-D array, read with
  ``scipy.io.loadmat`` (so MATLAB v7.3 files must be saved with ``-v7`` or as .npz).
- any other suffix (``.txt``, ``.dat``, ...): whitespace-separated numbers. Lines starting with
  ``%`` or ``#`` are comments; the last comment line above the first row of numbers may name
  the columns, as FEM packages write it (COMSOL: ``% x  y  u (m/s)  v (m/s)  p (Pa)``).

A table's entries are numbers; ``nan`` marks an output the file does not give at a node (the
Ghia et al. cavity table gives u on one centerline and v on the other). Axis values must be
finite.

Columns are matched by name where the file names them: a CSV header, a text file's last
comment line when it has one name per column and at least one of them is an axis or an output
(otherwise it is taken for prose), the arrays of an .npz or .mat file. A name may carry units
in parentheses (``u (m/s)`` is u); an output ``u`` may also be stored as ``usol`` (Raissi's
files). Every axis and output must be present, once. Other columns are ignored and listed in
:attr:`ReferenceData.ignored`, except a column named as an axis the problem does not have
(``z`` for a 2-D problem): the file is then in more dimensions than the problem, and it is
refused. Without names, the columns are the axes then the outputs, in the order given.

Arrays in .npz/.mat files are either scattered (every array holds the same number of values,
one per node, in any shape, e.g. columns or ``numpy.meshgrid`` arrays) or gridded: each axis a
vector and each output an array whose shape is the axis lengths in some order (Raissi's
``burgers_shock.mat``: ``x`` (256, 1), ``t`` (100, 1), ``usol`` (256, 100); jaxpi's files
store ``usol`` as (t, x)); a grid is expanded to its nodes. A grid whose shape fits more than
one order of the axes (two axes of the same length) is refused: store the nodes instead.

Every mistake is one line naming ``key`` and the file, raised as ``ValueError``.
"""
from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from pinn.coords import SPACE_AXES, TIME_AXIS, Axes
from pinn.reference.metrics import relative_l2 as _relative_l2

ALL_AXES = (*SPACE_AXES, TIME_AXIS)
FORMATS = ".csv, .npz, .mat, or whitespace-separated text (.txt, .dat, any other suffix)"
BOUNDS_RTOL = 1e-9


@dataclass(frozen=True)
class ReferenceData:
    """A reference solution at scattered nodes.

    Attributes:
        points: (N, d) float64 nodes, one column per axis in the order of ``axes``.
        values: (N, n_out) float64 values, one column per output in the order of ``outputs``;
            NaN where the file does not give that output at that node.
        path: the file.
        columns: the name each axis, then each output, was read under (``u (m/s)``, ``usol``);
            the axis and output names themselves for a file without names.
        axes: the axes, as asked for.
        outputs: the outputs, as asked for.
        ignored: the file's other columns, which were not read.
    """

    points: np.ndarray
    values: np.ndarray
    path: Path
    columns: Tuple[str, ...]
    axes: Tuple[str, ...]
    outputs: Tuple[str, ...]
    ignored: Tuple[str, ...] = ()


def read_reference(path, axes: Sequence[str], outputs: Sequence[str],
                   key: str = "pde.reference_file",
                   bounds: Optional[Mapping[str, Tuple[float, float]]] = None) -> ReferenceData:
    """Read a reference solution for a problem with these axes and outputs.

    Args:
        path: the file; its suffix picks the format (see the module's docstring).
        axes: the problem's axes in column order, e.g. ``("x", "y", "t")``.
        outputs: the outputs to read, e.g. ``("u", "v")``.
        key: the config key that named the file, for the messages.
        bounds: optional ``{axis: (lo, hi)}``; a node outside them (by more than 1e-9 of the
            larger bound's magnitude) is refused.

    Raises:
        ValueError: one line naming ``key``, the file and what was expected.
    """
    axes = Axes.parse(axes, key=f"{key} axes").names
    outputs = tuple(str(o) for o in outputs)
    bad = [o for o in outputs if not o or o in ALL_AXES or outputs.count(o) > 1]
    if not outputs or bad:
        raise ValueError(f"{key}: outputs {', '.join(outputs) or '(none)'}: expected distinct "
                         f"names that are not axes ({', '.join(ALL_AXES)})")
    path = Path(path)
    where = f"{key}={path}"
    if not path.is_file():
        raise ValueError(f"{where}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{where}: the file is empty")
    suffix = path.suffix.lower()
    if suffix in (".npz", ".mat"):
        table = _from_arrays(_load_arrays(path, suffix, where), axes, outputs, where)
    else:
        table = _from_text(path, axes, outputs, where, comma=suffix == ".csv")
    data, columns, ignored, lines = table
    d = len(axes)
    _check_values(data, axes, outputs, where, lines)
    if bounds:
        _check_bounds(data[:, :d], axes, bounds, where, lines)
    return ReferenceData(np.ascontiguousarray(data[:, :d]), np.ascontiguousarray(data[:, d:]),
                         path, tuple(columns), axes, outputs, tuple(ignored))


def relative_l2(pred, values, outputs: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Relative L2 errors at the nodes where the reference gives a value.

    For each output, sqrt(sum (pred - ref)^2 / sum ref^2) over its given (non-NaN) entries;
    under ``"all"`` the same over every given entry of every output together. Where the
    reference is zero on all its entries the error is absolute
    (:func:`pinn.reference.metrics.relative_l2`).

    Args:
        pred: (N, n_out) predictions at the reference nodes (a CPU tensor converts).
        values: a :class:`ReferenceData`, or its (N, n_out) values with NaN gaps.
        outputs: the outputs' names; taken from ``values`` when it is a ReferenceData.

    Returns:
        ``{output: error, ..., "all": error}``.
    """
    if isinstance(values, ReferenceData):
        outputs = values.outputs if outputs is None else outputs
        values = values.values
    ref = np.asarray(values, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ref = ref[:, None] if ref.ndim == 1 else ref  # (N, n_out)
    pred = pred.reshape(ref.shape) if pred.size == ref.size and ref.shape[1] == 1 else pred
    if outputs is None or len(outputs) != ref.shape[1] or pred.shape != ref.shape:
        raise ValueError(f"relative_l2: predictions {pred.shape}, reference {ref.shape} and "
                         f"outputs {outputs}: expected (N, n_out) twice and n_out names")
    given = ~np.isnan(ref)  # (N, n_out)
    empty = [o for o, g in zip(outputs, given.T) if not g.any()]
    if empty:
        raise ValueError(f"relative_l2: the reference gives no value of {', '.join(empty)}")
    errors = {str(o): _relative_l2(pred[g, j], ref[g, j])
              for j, (o, g) in enumerate(zip(outputs, given.T))}
    errors["all"] = _relative_l2(pred[given], ref[given])
    return errors


# -- text and CSV ---------------------------------------------------------------------------
def _from_text(path: Path, axes, outputs, where: str, comma: bool):
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        raise ValueError(f"{where}: unknown format (not text, and not known by its suffix): "
                         f"one of {FORMATS}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # an older export with units such as µm
    header: Optional[List[str]] = None
    rows: List[List[str]] = []
    lines: List[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s[0] in "%#":
            if not rows and not comma:
                header = _header_names(s.lstrip("%#"))
            continue
        rows.append([f.strip() for f in next(csv.reader([s]))] if comma else s.split())
        lines.append(number)
    if comma and rows and not any(_is_number(f) for f in rows[0]):
        header = rows.pop(0)
        lines.pop(0)
    if not rows:
        raise ValueError(f"{where}: no data (only comments, a header or blank lines)")
    width = len(rows[0])
    for row, number in zip(rows, lines):
        if len(row) != width:
            raise ValueError(f"{where}: line {number} has {len(row)} columns, line {lines[0]} "
                             f"has {width}")
    data = np.empty((len(rows), width))  # (N, columns)
    for i, row in enumerate(rows):
        try:
            data[i] = [float(f) for f in row]
        except ValueError:
            j = next(j for j, f in enumerate(row) if not _is_number(f))
            raise ValueError(f"{where}: line {lines[i]}, column {j + 1}: {row[j]!r} is not a "
                             "number") from None
    wanted = set(axes) | set(outputs) | {o + "sol" for o in outputs}
    if header is not None and len(header) == width and (
            comma or any(_base(n) in wanted for n in header)):
        picked, ignored = _match(header, axes, outputs, where)
        return data[:, picked], [header[i] for i in picked], ignored, np.array(lines)
    if comma and header is not None:
        raise ValueError(f"{where}: the header names {len(header)} columns, the data has "
                         f"{width}")
    return (*_positional(data, axes, outputs, where), np.array(lines))


def _header_names(text: str) -> List[str]:
    """Column names of a header line; a unit in parentheses joins the name before it, so
    ``u (m/s)  p (Pa)`` is two names."""
    names: List[str] = []
    depth = 0
    for token in text.split():
        if names and (depth > 0 or token.startswith("(")):
            names[-1] += " " + token
        else:
            names.append(token)
        depth = max(0, depth + token.count("(") - token.count(")"))
    return names


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# -- npz and mat ----------------------------------------------------------------------------
def _load_arrays(path: Path, suffix: str, where: str) -> Dict[str, np.ndarray]:
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        from scipy.io import loadmat

        return {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}
    except NotImplementedError:  # scipy's answer to an HDF5-based file
        raise ValueError(f"{where}: a MATLAB v7.3 file, which scipy cannot read: save it with "
                         "save(..., '-v7') or as .npz") from None
    except Exception as e:  # noqa: BLE001 - each reader has its own errors
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{where}: cannot read it as {suffix}: {type(e).__name__}: "
                         f"{first}") from None


def _from_arrays(arrays: Dict[str, np.ndarray], axes, outputs, where: str):
    if not arrays:
        raise ValueError(f"{where}: no data (the file holds no arrays)")
    if len(arrays) == 1:
        (name, table), = arrays.items()
        table = _numeric(name, table, where)
        if table.ndim != 2:
            raise ValueError(f"{where}: one array, {name}, of shape {table.shape}: expected a "
                             f"table (N, {len(axes) + len(outputs)}) or arrays named "
                             f"{', '.join((*axes, *outputs))}")
        return (*_positional(table, axes, outputs, where), None)
    names = list(arrays)
    picked, ignored = _match(names, axes, outputs, where)
    used = [_numeric(names[i], arrays[names[i]], where) for i in picked]
    columns = [names[i] for i in picked]
    shapes = {tuple(k for k in a.shape if k != 1) for a in used}
    if len(shapes) == 1:  # scattered: one value per node in every array
        data = np.stack([a.reshape(-1) for a in used], axis=1)
    else:
        data = _expand_grid(used, columns, axes, where)
    return data, columns, ignored, None


def _numeric(name: str, array, where: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind == "c":
        raise ValueError(f"{where}: {name} is complex: store its real and imaginary parts as "
                         "two outputs")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {name} is not numeric (dtype {array.dtype})")
    return array.astype(np.float64)


def _expand_grid(used: List[np.ndarray], columns: List[str], axes, where: str) -> np.ndarray:
    """Nodes and values of a grid: axis vectors, outputs shaped as the axis lengths in some
    order. Returns (N, d + n_out), nodes in C order over the axes' order."""
    d = len(axes)
    vectors = [a.reshape(-1) for a in used[:d]]
    lengths = tuple(v.size for v in vectors)
    listing = ", ".join(f"{c} {a.shape}" for c, a in zip(columns, used))
    for c, a in zip(columns[:d], used[:d]):
        if a.size != max(a.shape, default=1):
            raise ValueError(f"{where}: arrays of different sizes ({listing}) and the axis {c} "
                             "is not a vector: expected one value per node in every array, or "
                             "axis vectors and outputs on their grid")
    long_axes = [i for i in range(d) if lengths[i] != 1]
    columns_out = []
    for c, a in zip(columns[d:], used[d:]):
        shape = tuple(k for k in a.shape if k != 1)
        orders = [p for p in itertools.permutations(long_axes)
                  if tuple(lengths[i] for i in p) == shape]
        if not orders:
            raise ValueError(f"{where}: {c} has shape {a.shape}, which is neither one value per "
                             f"node nor a grid of the axes {', '.join(axes)} (lengths "
                             f"{lengths}) in some order ({listing})")
        if len(orders) > 1:
            raise ValueError(f"{where}: {c} has shape {a.shape}, which fits the axes "
                             f"{', '.join(axes)} (lengths {lengths}) in more than one order: "
                             "store the nodes instead (axis arrays of that shape, e.g. from "
                             "numpy.meshgrid, or columns)")
        order = orders[0]  # order[k]: the axis along dimension k of the array
        grid = np.transpose(a.reshape(shape), np.argsort(order)).reshape(lengths)
        columns_out.append(grid.reshape(-1))
    nodes = [g.reshape(-1) for g in np.meshgrid(*vectors, indexing="ij")]
    return np.stack([*nodes, *columns_out], axis=1)


# -- columns and checks ---------------------------------------------------------------------
def _base(name: str) -> str:
    """A column's name without its unit: ``u (m/s)`` -> ``u``."""
    return name.split("(", 1)[0].strip()


def _match(names: Sequence[str], axes, outputs, where: str):
    """The index of the column of each axis, then each output; and the ignored names."""
    base = [_base(n) for n in names]
    listing = ", ".join(names)
    picked, missing = [], []
    for want in (*axes, *outputs):
        accepted = (want,) if want in axes else (want, want + "sol")
        hits = [i for i, b in enumerate(base) if b in accepted]
        if len(hits) > 1:
            raise ValueError(f"{where}: {' and '.join(names[i] for i in hits)} are both "
                             f"{want}: keep one")
        if hits:
            picked.append(hits[0])
        else:
            missing.append(want)
    if missing:
        raise ValueError(f"{where}: no column {', '.join(missing)} (it has {listing}); "
                         f"expected {', '.join((*axes, *outputs))}")
    extra = [names[i] for i in range(len(names)) if i not in picked]
    stray = [n for n in extra if _base(n) in ALL_AXES]
    if stray:
        raise ValueError(f"{where}: {', '.join(stray)}: an axis this problem does not have "
                         f"(axes {', '.join(axes)}); the file is in more dimensions")
    return picked, extra


def _positional(data: np.ndarray, axes, outputs, where: str):
    expected = (*axes, *outputs)
    if data.shape[1] != len(expected):
        raise ValueError(f"{where}: {data.shape[1]} columns, expected {len(expected)} "
                         f"({', '.join(expected)})")
    return data, list(expected), []


def _at(lines: Optional[np.ndarray], i: int) -> str:
    return f"line {lines[i]}" if lines is not None else f"node {i}"


def _check_values(data: np.ndarray, axes, outputs, where: str, lines) -> None:
    if data.shape[0] == 0:
        raise ValueError(f"{where}: no data (no nodes)")
    d = len(axes)
    for j, name in enumerate((*axes, *outputs)):
        col = data[:, j]
        bad = np.flatnonzero(~np.isfinite(col) if j < d else np.isinf(col))
        if bad.size:
            i = bad[0]
            rule = "a node's coordinates are finite" if j < d else \
                "a value is a finite number, or nan where it is not given"
            raise ValueError(f"{where}: {_at(lines, i)}: {name} is {col[i]}: {rule}")
        if j >= d and np.isnan(col).all():
            raise ValueError(f"{where}: no value of {name} (every entry is nan)")


def _check_bounds(points: np.ndarray, axes, bounds, where: str, lines) -> None:
    for name, (lo, hi) in bounds.items():
        if name not in axes:
            raise ValueError(f"{where}: bounds for {name}, which is not an axis "
                             f"({', '.join(axes)})")
        col = points[:, axes.index(name)]
        tol = BOUNDS_RTOL * (max(abs(lo), abs(hi)) or 1.0)
        out = np.flatnonzero((col < lo - tol) | (col > hi + tol))
        if out.size:
            i = out[0]
            raise ValueError(f"{where}: {_at(lines, i)}: {name}={float(col[i])!r} is outside "
                             f"[{lo:g}, {hi:g}] ({out.size} node(s) outside)")
