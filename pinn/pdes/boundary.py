"""Boundary conditions on the named pieces of a region (:class:`pinn.geometry.Region`),
parsed from ``pde.conditions``.

.. code-block:: yaml

    conditions:
      plate: "0"                          # every piece of the shape plate: u = 0
      hole: {neumann: {u: "0"}}           # du/dn = 0, n the exact outward normal
      inlet: {robin: {u: {a: 1, b: 0.5, g: "x"}}}   # a u + b du/dn = g
      lid: {where: "y > 0.99", u: "1", v: "0"}      # the boundary points where y > 0.99
      rim: {where: "x < 0", over: [plate], u: "0"}    # ... of the pieces named in over
      outlet: free                        # the residual alone

A key names a piece (``plate.left``), every piece of a shape (``plate``), or -- with
``where`` -- a set of boundary points chosen by a condition on the coordinates
(:mod:`pinn.predicates`), on every piece or on those in ``over``. A boundary point takes the
conditions of the first entry that covers it: the entries with ``where`` in the order written,
then its piece's (or shape's) entry. Every boundary point must be covered; a piece without a
condition is refused unless declared ``free``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch.quasirandom import SobolEngine

from pinn.expressions import Expression, parse
from pinn.geometry.region import Region
from pinn.pdes.conditions import _by_output, _per_output
from pinn.predicates import Predicate, parse_predicate

PIECE_KINDS = ("dirichlet", "neumann", "robin")
ROBIN_KEYS = ("a", "b", "g")
KINDS_TEXT = ", ".join(PIECE_KINDS) + "; where, over"



@dataclass(frozen=True)
class PieceCondition:
    """One kind of condition of one entry, on some outputs.

    Attributes:
        kind: ``dirichlet`` (u = g), ``neumann`` (du/dn = g) or ``robin`` (a u + b du/dn = g).
        outputs: the output columns.
        values: g per output; ``a``, ``b``: Robin's coefficients per output (expressions).
    """

    kind: str
    outputs: Tuple[int, ...]
    values: Tuple[Expression, ...]
    a: Tuple[Expression, ...] = ()
    b: Tuple[Expression, ...] = ()


@dataclass(frozen=True)
class Entry:
    """One key of ``pde.conditions``: where it holds and what.

    Attributes:
        label: the key.
        pieces: the region's pieces it may hold on (their indices).
        where: the condition on the coordinates, or None (the whole pieces).
        conditions: what holds there ([] for ``free``).
    """

    label: str
    pieces: Tuple[int, ...]
    where: Optional[Predicate]
    conditions: Tuple[PieceCondition, ...]

    @property
    def needs_gradient(self) -> bool:
        return any(c.kind != "dirichlet" for c in self.conditions)


def _source(value: Any) -> str:
    return " ".join(str(value).split())


def _is_mapping(value: Any) -> bool:
    return hasattr(value, "items") and hasattr(value, "keys")


def parse_piece_conditions(spec: Optional[Mapping[str, Any]], region: Region,
                           outputs: Sequence[str], params: Mapping[str, float],
                           key: str = "pde.conditions") -> List[Entry]:
    """The entries of ``spec`` on ``region``, ordered as they are matched (``where`` entries
    first, in the order written).

    Raises:
        ValueError: a key that names no piece and has no ``where``; an unknown output or kind;
            ``over`` naming no piece; a ``where`` that holds at no boundary point; a boundary
            point that no entry covers (a piece without a condition and not ``free``); one
            line each, naming the key.
    """
    spec = spec or {}
    names = set(params)
    pieces_text = ", ".join(region.piece_names())
    where_entries, piece_entries = [], []
    for label, value in spec.items():
        label = str(label)
        at = f"{key}.{label}"
        selected = region.select(label)
        where, on = None, None
        body = value
        if _is_mapping(value) and ("where" in value or "over" in value):
            body = {k: v for k, v in value.items() if str(k) not in ("where", "over")}
            if "where" not in value:
                raise ValueError(f"{at}.over: chooses pieces for a where condition; give where "
                                 "too (or name the piece as the key)")
            where = parse_predicate(str(value["where"]), set(region.axes.names) | names,
                                    key=f"{at}.where")
            if "over" in value:
                on_names = [value["over"]] if isinstance(value["over"], str) else list(value["over"])
                on = []
                for n in on_names:
                    got = region.select(str(n))
                    if not got:
                        raise ValueError(f"{at}.over: {n} is not a piece of the boundary; the "
                                         f"pieces are {pieces_text}")
                    on.extend(got)
            if not body:
                raise ValueError(f"{at}: give the condition beside where (e.g. u: \"0\")")
        if where is None and not selected:
            if label in [q.name for q, _ in region.shape.pieces]:
                raise ValueError(f"{at}: the piece {label} lies nowhere on the domain's boundary "
                                 f"(another shape covers it); the pieces are {pieces_text}")
            raise ValueError(f"{at}: no piece is called {label}; the pieces are {pieces_text} "
                             "(a shape's name stands for all its pieces; a condition on a "
                             "predicate gives where: \"<condition>\")")
        if where is None:
            targets = tuple(selected)
        else:  # the pieces of over, else the piece (or shape) the key names, else every piece
            targets = tuple(on if on is not None else (selected or range(len(region.pieces))))
        if isinstance(body, str) and body.strip() == "free":
            conds: List[PieceCondition] = []
        else:
            conds = _parse_body(body, outputs, names | set(region.axes.names), at)
        entry = Entry(label, tuple(targets), where, tuple(conds))
        (where_entries if where is not None else piece_entries).append(entry)
    entries = where_entries + piece_entries
    if not region.has_normals:
        needs = next((e for e in entries for c in e.conditions if c.kind != "dirichlet"), None)
        if needs is not None:
            raise ValueError(f"{key}.{needs.label}: a Neumann or Robin condition needs the "
                             "outward normals; the boundary file (pde.geometry.points.boundary) "
                             "has none: add n_x, n_y[, n_z] columns after the points")
    _check_cover(entries, region, params, key)
    return entries


def _parse_body(value: Any, outputs: Sequence[str], names: set,
                where: str) -> List[PieceCondition]:
    if value is None:
        raise ValueError(f"{where}: empty; give a value, output: value, {{dirichlet: ...}}, "
                         "{neumann: ...}, {robin: ...}, or free")
    if not _is_mapping(value):
        return [_condition("dirichlet", _per_output(value, outputs, where), names, where)]
    keys = [str(k) for k in value.keys()]
    if any(k in PIECE_KINDS for k in keys):
        bad = [k for k in keys if k not in PIECE_KINDS]
        if bad:
            raise ValueError(f"{where}.{bad[0]}: not allowed beside {'/'.join(PIECE_KINDS)}: "
                             f"one of {', '.join(PIECE_KINDS)} (and where, over)")
        conds = []
        for kind in keys:
            sub = value[kind]
            at = f"{where}.{kind}"
            if kind == "robin":
                conds.append(_robin(sub, outputs, names, at))
                continue
            vals = _by_output(sub, outputs, at, KINDS_TEXT) if _is_mapping(sub) else \
                _per_output(sub, outputs, at)
            conds.append(_condition(kind, vals, names, at))
        taken = [o for c in conds for o in c.outputs]
        twice = sorted({outputs[o] for o in taken if taken.count(o) > 1})
        if twice:
            raise ValueError(f"{where}: the output {twice[0]} has two conditions here")
        return conds
    return [_condition("dirichlet", _by_output(value, outputs, where, KINDS_TEXT), names, where)]


def _condition(kind: str, values: Dict[int, str], names: set, where: str) -> PieceCondition:
    cols = tuple(sorted(values))
    return PieceCondition(kind, cols, tuple(parse(values[k], names, key=where) for k in cols))


def _robin(value: Any, outputs: Sequence[str], names: set, where: str) -> PieceCondition:
    if not _is_mapping(value):
        raise ValueError(f"{where}: output: {{a: .., b: .., g: ..}} (a u + b du/dn = g)")
    cols, a, b, g = [], [], [], []
    for name, spec in value.items():
        at = f"{where}.{name}"
        if str(name) not in outputs:
            raise ValueError(f"{at}: not an output; the outputs are {', '.join(outputs)}")
        if not _is_mapping(spec) or sorted(str(k) for k in spec.keys()) != list(ROBIN_KEYS):
            raise ValueError(f"{at}: give a, b and g (a u + b du/dn = g), e.g. {{a: 1, b: 1, "
                             "g: \"0\"}")
        cols.append(list(outputs).index(str(name)))
        a.append(parse(_source(spec["a"]), names, key=f"{at}.a"))
        b.append(parse(_source(spec["b"]), names, key=f"{at}.b"))
        g.append(parse(_source(spec["g"]), names, key=f"{at}.g"))
    order = sorted(range(len(cols)), key=lambda i: cols[i])
    return PieceCondition("robin", tuple(cols[i] for i in order), tuple(g[i] for i in order),
                          tuple(a[i] for i in order), tuple(b[i] for i in order))


# -- which entry holds where ------------------------------------------------------------------

def assign(entries: Sequence[Entry], region: Region, piece: int, points: torch.Tensor,
           env: Mapping[str, object]) -> torch.Tensor:
    """The entry each point (N, d) of ``piece`` takes: (N,) long, -1 where none covers it.
    ``env``: the coordinate columns and parameters for the predicates."""
    out = torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    for i, e in enumerate(entries):
        if piece not in e.pieces:
            continue
        hit = out < 0
        if e.where is not None:
            hit = hit & e.where(env, points[:, :1]).to(points.device)
        out = torch.where(hit, torch.full_like(out, i), out)
    return out


def _check_cover(entries: Sequence[Entry], region: Region, params: Mapping[str, float],
                 key: str, n: int = 1024) -> None:
    """Every boundary point is covered (checked on ``n`` quasi-random points per piece), and
    every ``where`` holds somewhere."""
    held = [False] * len(entries)
    for j, rp in enumerate(region.pieces):
        cols = region.unit_columns()[f"piece{j}"]
        engine = SobolEngine(max(cols, 1), scramble=True, seed=j)
        points, _ = region.boundary(
            j, n, lambda m: engine.draw(m, dtype=torch.float64)[:, :cols])
        env = {**params, **{a: points[:, i:i + 1] for i, a in enumerate(region.axes.names)}}
        idx = assign(entries, region, j, points, env)
        for i in range(len(entries)):
            held[i] = held[i] or bool((idx == i).any())
        if bool((idx < 0).any()):
            p = points[int((idx < 0).nonzero()[0])]
            at = ", ".join(f"{v:.4g}" for v in p.tolist())
            raise ValueError(f"{key}: the piece {rp.name} has no condition (e.g. at ({at})); "
                             f"give one ({rp.name}: \"0\" for u = 0) or write {rp.name}: free")
    for e, h in zip(entries, held):
        if e.where is not None and not h:
            raise ValueError(f"{key}.{e.label}.where: \"{e.where.source}\" holds at no point of "
                             "the boundary pieces it is on")


__all__ = ["Entry", "PieceCondition", "PIECE_KINDS", "assign", "parse_piece_conditions"]
