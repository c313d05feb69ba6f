"""Conditions on coordinates, for choosing boundary points: ``"y > 0.99"``,
``"x < 0 and abs(y) < 0.5"``, ``"0.2 <= x <= 0.8"``, ``"not (x > 1)"``.

Grammar: comparisons (``<``, ``<=``, ``>``, ``>=``; chains allowed) between arithmetic
expressions of :mod:`pinn.expressions` (parsed by it, so the same allow-list holds), combined
by ``and``, ``or``, ``not`` and parentheses. Equality tests are refused (points on a curve
never satisfy ``==`` in floating point; write a band such as ``abs(x - 1) < 1e-9``).
"""
from __future__ import annotations

import ast
import operator
from typing import Callable, Iterable, Mapping

import torch

from pinn.expressions import ExpressionError, parse

_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge}


class Predicate:
    """A checked condition on coordinates: ``pred(env)`` -> a bool tensor."""

    def __init__(self, source: str, fn: Callable[[Mapping[str, object]], torch.Tensor],
                 names: frozenset):
        self.source, self._fn, self.names = source, fn, names

    def __call__(self, env: Mapping[str, object], like: torch.Tensor) -> torch.Tensor:
        """Whether each point satisfies it: (N,) bool, N the rows of ``like`` (N, 1)."""
        v = self._fn(env)
        if not isinstance(v, torch.Tensor):
            v = torch.tensor(bool(v))
        return v.reshape(-1).expand(like.shape[0]) if v.numel() == 1 else v.reshape(-1)


def parse_predicate(source: str, names: Iterable[str], key: str) -> Predicate:
    """Parse ``source`` (see the module docstring) over the variables ``names``.

    Raises:
        ExpressionError: not a comparison, an equality, a malformed side; one line naming
            ``key``.
    """
    text = " ".join(str(source).split())
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ExpressionError(f"{key}: not a condition such as \"y > 0.99\" or \"x < 0 and "
                              f"y > 0\": '{text}'") from None
    allowed = frozenset(names)
    used: set = set()

    def side(node):
        e = parse(ast.unparse(node), allowed, key=key)
        used.update(e.names)
        return e

    def build(node):
        if isinstance(node, ast.BoolOp):
            parts = [build(v) for v in node.values]
            combine = torch.logical_and if isinstance(node.op, ast.And) else torch.logical_or

            def fn(env):
                out = torch.as_tensor(parts[0](env))
                for p in parts[1:]:
                    out = combine(out, torch.as_tensor(p(env)))
                return out
            return fn
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = build(node.operand)
            return lambda env: torch.logical_not(torch.as_tensor(inner(env)))
        if isinstance(node, ast.Compare):
            bad = [op for op in node.ops if type(op) not in _COMPARE]
            if bad:
                raise ExpressionError(f"{key}: only <, <=, >, >= compare here (a band such as "
                                      f"abs(x - 1) < 1e-9 instead of ==): '{text}'")
            sides = [side(node.left)] + [side(c) for c in node.comparators]
            ops = [_COMPARE[type(op)] for op in node.ops]

            def fn(env):
                # Constants stay Python floats (as_tensor would round them to float32).
                vals = [s(env) for s in sides]
                out = torch.as_tensor(ops[0](vals[0], vals[1]))
                for i in range(1, len(ops)):
                    out = out & torch.as_tensor(ops[i](vals[i], vals[i + 1]))
                return out
            return fn
        raise ExpressionError(f"{key}: a condition on the coordinates such as \"y > 0.99\" "
                              f"(comparisons joined by and, or, not): '{text}'")

    return Predicate(text, build(tree), frozenset(used))


__all__ = ["Predicate", "parse_predicate"]
