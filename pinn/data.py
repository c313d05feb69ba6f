"""Observation data: reading, checking, the data loss's points, and synthetic observations.

A file of observations has one column per variable: one per axis of the problem (``x``, ``t``;
``x``, ``y``; ``x``, ``y``, ``z``, ``t``; ...) and some or all of the problem's outputs (``data.columns`` maps other column names), optionally a noise column (the
standard deviation of each observation: weight 1/sigma^2) or a weight column; weights are
normalized to mean 1, so ``loss.weights.data`` stays the one knob. Formats by extension:
``.npz`` (arrays by name), ``.csv`` (a header row of names, comma-separated numbers), ``.mat``
(MATLAB, variables by name). Every column is read as a flat float64 array.

``python -m pinn.data pde=burgers n=2000 noise=0.01 seed=0 out=burgers_2000.npz`` draws ``n``
observations from the problem's reference solution (closed form or solver) at distinct nodes of
its evaluation grid (``nx=``, ``ny=``, ``nz=``, ``nt=``: nodes per axis; the problem's own
evaluation grid by default), or at the nodes of its reference file where it has only that, with
relative Gaussian noise as in Raissi et al. 2019 (noise times the standard deviation of the
observed values), and writes them in the format its extension names.
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

FORMATS = (".npz", ".csv", ".mat")


class DataError(ValueError):
    """Observations that cannot be used; the message is one line naming the file and column."""


@dataclass
class Observations:
    """Observed values of some outputs at points of the problem's domain.

    Attributes:
        points: (N, d) points, columns in the problem's axes' order.
        values: (N, K) observed values of the outputs ``columns`` (indices into the problem's
            outputs), K >= 1.
        weights: (N, 1) per-point weights with mean 1, or None (all equal).
        names: the observed outputs' names.
        source: the file they came from.
        axes: the axes' names (the columns of ``points``).
    """

    points: torch.Tensor
    values: torch.Tensor
    columns: Tuple[int, ...]
    names: Tuple[str, ...]
    weights: Optional[torch.Tensor] = None
    source: str = ""
    axes: Tuple[str, ...] = ("x", "t")

    def to(self, dtype: torch.dtype, device: torch.device) -> "Observations":
        cast = {"dtype": dtype, "device": device}
        return replace(self, points=self.points.to(**cast), values=self.values.to(**cast),
                       weights=None if self.weights is None else self.weights.to(**cast))

    def column(self, axis: str) -> torch.Tensor:
        """The coordinate ``axis`` of every point, (N, 1)."""
        i = self.axes.index(axis)
        return self.points[:, i : i + 1]

    @property
    def x(self) -> torch.Tensor:
        return self.column("x")

    @property
    def t(self) -> torch.Tensor:
        return self.column("t")

    def misfit(self, predicted: torch.Tensor) -> torch.Tensor:
        """The data term: the (weighted) mean over points of the mean square misfit over the
        observed outputs; ``predicted``: (N, n_out) network values at the points."""
        sq = (predicted[:, list(self.columns)] - self.values).square().mean(dim=1, keepdim=True)
        return (sq if self.weights is None else self.weights * sq).mean()

    def __len__(self) -> int:
        return self.x.shape[0]


# -- files --------------------------------------------------------------------------------
def read_table(path: Path) -> Dict[str, np.ndarray]:
    """Columns of an .npz, .csv or .mat file as flat float64 arrays.

    Raises:
        DataError: a missing or unreadable file, an unknown extension, a non-numeric column.
    """
    path = Path(path)
    key = f"data.file={path}"
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"{key}: unknown format {path.suffix or '(no extension)'}: one of "
                        f"{', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{key}: no such file")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as f:
                raw = {k: f[k] for k in f.files}
        elif path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
            if not rows:
                raise DataError(f"{key}: the file is empty")
            header = [h.strip() for h in rows[0]]
            body = rows[1:]
            bad = next(((i, r) for i, r in enumerate(body, 2) if len(r) != len(header)), None)
            if bad:
                raise DataError(f"{key}: line {bad[0]} has {len(bad[1])} fields, the header "
                                f"{len(header)}")
            raw = {}
            for j, name in enumerate(header):
                try:
                    raw[name] = np.array([float(r[j]) for r in body], dtype=np.float64)
                except ValueError:
                    line = next(i for i, r in enumerate(body, 2) if not _is_float(r[j]))
                    raise DataError(f"{key}: column {name}, line {line}: {body[line - 2][j]!r} "
                                    "is not a number") from None
        else:
            from scipy.io import loadmat

            raw = {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - every reader has its own errors
        raise DataError(f"{key}: cannot read it: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
    out = {}
    for name, value in raw.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            continue  # text or structures (e.g. .mat headers): not a data column
        out[str(name)] = arr.astype(np.float64).reshape(-1)
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_table(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    """Write equal-length columns as .npz, .csv or .mat (by the extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"out={path}: unknown format {suffix or '(no extension)'}: one of "
                        f"{', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in columns.items()}
    if suffix == ".npz":
        np.savez(path, **cols)
    elif suffix == ".csv":
        names = list(cols)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names)
            for row in zip(*(cols[n] for n in names)):
                w.writerow([repr(float(v)) for v in row])  # repr: every digit round-trips
    else:
        from scipy.io import savemat

        savemat(str(path), {k: v[:, None] for k, v in cols.items()})


# -- checks -------------------------------------------------------------------------------
def load_observations(data_cfg, pde) -> Optional[Observations]:
    """The observations that ``data_cfg`` (the ``data`` config node) names for ``pde``, as
    float64 CPU tensors, or None without ``data.file``.

    Raises:
        DataError: one line naming the file, the column or the key.
    """
    if not data_cfg.file:
        return None
    path = Path(str(data_cfg.file))
    table = read_table(path)
    axes = tuple(pde.axes.names)
    columns = {str(k): str(v) for k, v in (data_cfg.columns or {}).items()}
    unknown = [k for k in columns if k not in (*axes, *pde.outputs)]
    if unknown:
        raise DataError(f"data.columns.{unknown[0]}: not a variable of {pde.name}: one of "
                        f"{', '.join((*axes, *pde.outputs))}")
    col = {name: columns.get(name, name) for name in (*axes, *pde.outputs)}
    present = ", ".join(table) or "none"

    def column(name: str) -> np.ndarray:
        if col[name] not in table:
            raise DataError(f"data.file={path}: no column {col[name]!r} for {name} (columns: "
                            f"{present}; map names with data.columns.{name}=<column>)")
        return table[col[name]]

    if data_cfg.outputs:
        names = [str(o) for o in data_cfg.outputs]
        bad = [o for o in names if o not in pde.outputs]
        if bad:
            raise DataError(f"data.outputs: {bad[0]} is not an output of {pde.name}: one of "
                            f"{', '.join(pde.outputs)}")
    else:
        names = [o for o in pde.outputs if col[o] in table]
        if not names:
            raise DataError(f"data.file={path}: no column for any output of {pde.name} "
                            f"({', '.join(col[o] for o in pde.outputs)}; columns: {present})")
    used = {**{a: column(a) for a in axes}, **{o: column(o) for o in names}}
    extra = {}
    for key in ("noise_column", "weight_column"):
        name = data_cfg.get(key)
        if name:
            if str(name) not in table:
                raise DataError(f"data.{key}={name}: no such column in {path} (columns: "
                                f"{present})")
            extra[key] = table[str(name)]
    if len(extra) == 2:
        raise DataError("data.noise_column and data.weight_column: give one of them")
    lengths = {k: v.shape[0] for k, v in {**used, **extra}.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"data.file={path}: columns of different lengths: "
                        + ", ".join(f"{col.get(k, k)} {n}" for k, n in lengths.items()))
    n = lengths[axes[0]]
    if n == 0:
        raise DataError(f"data.file={path}: no observations (the columns are empty)")
    for k, v in {**used, **extra}.items():
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            name = col.get(k, data_cfg.get(k))
            raise DataError(f"data.file={path}: column {name} has {bad.size} non-finite value(s) "
                            f"(NaN or inf), the first in row {bad[0]}")
    for k, lo, hi in zip(axes, pde.domain.lower, pde.domain.upper):
        tol = 1e-12 * max(1.0, abs(lo), abs(hi))
        out = np.flatnonzero((used[k] < lo - tol) | (used[k] > hi + tol))
        if out.size:
            raise DataError(f"data.file={path}: {out.size} point(s) outside the domain, the first "
                            f"in row {out[0]}: {col[k]}={used[k][out[0]]:g} is not in "
                            f"[{lo:g}, {hi:g}]")
    if pde.region is not None:  # the bounding box holds them; the region must too
        pts = torch.as_tensor(np.stack([used[a] for a in axes], axis=1), dtype=torch.float64)
        level = pde.region.level(pts[:, : pde.region.k])
        out = np.flatnonzero((level > 1e-9 * pde.region.h / 1e-7).numpy())
        if out.size:
            raise DataError(f"data.file={path}: {out.size} point(s) outside the domain "
                            f"(pde.geometry), the first in row {out[0]}")
    weights = None
    if "noise_column" in extra:
        sigma = extra["noise_column"]
        if np.any(sigma <= 0):
            raise DataError(f"data.noise_column={data_cfg.noise_column}: standard deviations "
                            "must be > 0")
        weights = 1.0 / sigma**2
    elif "weight_column" in extra:
        weights = extra["weight_column"]
        if np.any(weights < 0) or not np.any(weights > 0):
            raise DataError(f"data.weight_column={data_cfg.weight_column}: weights must be >= 0, "
                            "not all 0")
    w = None if weights is None else torch.as_tensor(weights / weights.mean())[:, None]
    points = torch.as_tensor(np.stack([used[a] for a in axes], axis=1), dtype=torch.float64)
    return Observations(points, torch.as_tensor(np.stack([used[o] for o in names], axis=1)),
                        tuple(pde.outputs.index(o) for o in names), tuple(names), w, str(path),
                        axes)


# -- synthetic observations ---------------------------------------------------------------
def synthesize(pde, n: int, noise: float, seed: int, nx: Optional[int] = None,
               nt: Optional[int] = None, outputs: Optional[Sequence[str]] = None,
               counts: Optional[Mapping[str, int]] = None) -> Dict[str, np.ndarray]:
    """``n`` observations at distinct nodes, drawn with ``numpy.random.default_rng(seed)``,
    from the problem's reference, plus relative Gaussian noise: value + noise * std(values of
    that output) * N(0, 1).

    The nodes: an evenly spaced grid over the domain, ``counts`` nodes per axis (a problem in
    (x, t): ``nx`` by ``nt``); for a problem whose only reference is a file of values
    (``pde.reference_file``), that file's nodes (where it gives every observed output).

    Returns:
        one column per axis and one per observed output.
    """
    from pinn.evaluation import make_eval_grid  # evaluation reads the network; data does not

    if pde.reference_kind == "none":
        raise DataError(f"pde={pde.name} has no reference solution (exact, a solver or a file) "
                        "to draw observations from")
    names = list(outputs) if outputs else list(pde.outputs)
    bad = [o for o in names if o not in pde.outputs]
    if bad:
        raise DataError(f"outputs: {bad[0]} is not an output of {pde.name}: one of "
                        f"{', '.join(pde.outputs)}")
    axes = tuple(pde.axes.names)
    if counts is None and nx is not None:
        counts = {"x": int(nx), "t": int(nt)}
    ref = pde.reference_data
    if ref is not None and not pde.has_exact:
        keep = [pde.outputs.index(o) for o in names]
        have = [list(ref.outputs).index(pde.outputs[k]) if pde.outputs[k] in ref.outputs
                else None for k in keep]
        if None in have:
            missing = names[have.index(None)]
            raise DataError(f"outputs: the reference file of {pde.name} gives no values of "
                            f"{missing} (it has {', '.join(ref.outputs)})")
        values = ref.values[:, have]  # (M, K)
        given = np.flatnonzero(~np.isnan(values).any(axis=1))
        points, values, where = ref.points[given], values[given], f"the {given.size} nodes " \
            f"of {ref.path.name} that give {', '.join(names)}"
    else:
        grid = make_eval_grid(pde, counts=counts or None) if counts else None
        if grid is None:
            raise DataError("give the nodes per axis (" + ", ".join(f"n{a}" for a in axes)
                            + ")")
        if grid.reference is None:
            raise DataError(f"pde={pde.name} has no reference on a grid to draw observations "
                            "from")
        points = grid.points()
        values = grid.reference.reshape(points.shape[0], -1)[:, [pde.outputs.index(o)
                                                                   for o in names]]
        if grid.mask is not None:  # a region of shapes: its grid nodes only
            inside = grid.mask.reshape(-1)
            points, values = points[inside], values[inside]
        where = f"the {points.shape[0]} nodes of the " + " x ".join(
            str(len(c)) for c in grid.coords) + f" grid ({', '.join(f'n{a}' for a in axes)})"
    if n > points.shape[0]:
        raise DataError(f"n={n} is more than {where}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(points.shape[0], size=n, replace=False)
    out = {a: points[idx, i] for i, a in enumerate(axes)}
    for j, name in enumerate(names):
        clean = values[idx, j]
        out[name] = clean + noise * np.std(clean) * rng.standard_normal(n)
    return out


DATA_KEYS = {"n": int, "noise": float, "seed": int, "out": str, "nx": int, "ny": int,
             "nz": int, "nt": int, "outputs": str}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pinn.data pde=<problem> n=<count> noise=<level> seed=<s> out=<file>`` (and
    nx=, ny=, nz=, nt=: grid nodes per axis; outputs=u,v; any ``pde.*`` override)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    opts: Dict[str, object] = {"n": 2000, "noise": 0.0, "seed": 0}
    overrides: List[str] = []
    try:
        for arg in argv:
            key, sep, value = arg.partition("=")
            if not sep:
                raise DataError(f"{arg}: expected key=value (keys: pde, pde.*, "
                                f"{', '.join(DATA_KEYS)})")
            if key in DATA_KEYS:
                try:
                    opts[key] = DATA_KEYS[key](value)
                except ValueError:
                    raise DataError(f"{key}={value} is not allowed: "
                                    f"{'an integer' if DATA_KEYS[key] is int else 'a number'}") \
                        from None
            elif key == "pde" or key.lstrip("+").startswith("pde."):
                overrides.append(arg)
            else:
                raise DataError(f"{key} is not a key of pinn.data: pde, pde.*, "
                                f"{', '.join(DATA_KEYS)}")
        if "out" not in opts:
            raise DataError("out is missing: the file to write (.npz, .csv or .mat)")
        if int(opts["n"]) < 1:
            raise DataError(f"n={opts['n']} is not allowed: an integer >= 1")
        if not float(opts["noise"]) >= 0:
            raise DataError(f"noise={opts['noise']} is not allowed: a number >= 0")
        if Path(str(opts["out"])).suffix.lower() not in FORMATS:
            raise DataError(f"out={opts['out']}: unknown format: one of {', '.join(FORMATS)}")
        from pinn.cli import CommandLineError, check_overrides
        from pinn.config import register_configs
        from pinn.pdes import build_pde

        register_configs()  # the train schema, composed here for its pde group

        try:
            cfg = check_overrides("train", overrides)
        except CommandLineError as e:
            raise DataError(str(e)) from None
        from pinn.evaluation import grid_counts

        pde = build_pde(cfg.pde)
        outputs = [o for o in str(opts.get("outputs", "")).split(",") if o]
        axes = pde.axes.names
        stray = [k for k in ("nx", "ny", "nz", "nt") if k in opts and k[1:] not in axes]
        if stray:
            raise DataError(f"{stray[0]}: {pde.name} has no axis {stray[0][1:]}; nodes per "
                            f"axis: {', '.join(f'n{a}' for a in axes)}")
        counts = {a: int(opts.get(f"n{a}", c)) for a, c in grid_counts(pde, cfg.pde).items()}
        bad = [a for a, c in counts.items() if c < 2]
        if bad:
            raise DataError(f"n{bad[0]}={counts[bad[0]]} is not allowed: an integer >= 2")
        cols = synthesize(pde, int(opts["n"]), float(opts["noise"]), int(opts["seed"]),
                          outputs=outputs, counts=counts)
        write_table(Path(str(opts["out"])), cols)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{opts['n']} observations of {', '.join(k for k in cols if k not in axes)} "
          f"({pde.name}, noise {float(opts['noise']):g}, seed {opts['seed']}) written to "
          f"{opts['out']}")
    return 0


if __name__ == "__main__":
    from pinn.cli import quiet_closed_pipe

    with quiet_closed_pipe():
        sys.exit(main())
