"""Safe arithmetic expressions for PDE residuals, sources and conditions in the config.

A config may spell a residual as ``"u_t + u*u_x - nu*u_xx"``, an initial condition as
``"-sin(pi*x)"`` or a coefficient as ``"0.01/pi"``. Such strings are parsed once, at start-up,
with :func:`ast.parse` and checked against an allow-list; nothing is ever handed to ``eval``,
``exec`` or ``compile``. The checked tree is turned into a tree of small closures that is then
evaluated on floats, numpy arrays or torch tensors (so autograd flows through it).

Grammar (everything else is rejected with an :class:`ExpressionError`)::

    expr    := expr ('+' | '-') expr | expr ('*' | '/') expr | expr '**' expr
             | ('+' | '-') expr | '(' expr ')' | number | name | func '(' expr ')'
    number  := decimal literal: 3, 3.0, .5, 1e-4, 2.5E+3   (no hex, no '_', no 'j')
    name    := a variable passed in ``allowed_names``, or a constant: pi, e
    func    := abs arccos arcsin arctan cos cosh exp log sech sin sinh sqrt tan tanh

Precedence and associativity are Python's: ``-x**2`` is ``-(x**2)``, ``2**-1`` is ``0.5`` and
``2**3**2`` is ``2**9``.

Limits, all checked before any value is computed:

* at most :data:`MAX_LENGTH` (2000) characters, checked before parsing;
* only printable ASCII characters, spaces and tabs (Python would silently NFKC-normalise
  non-ASCII identifiers, so ``ｘ`` would otherwise mean ``x``);
* at most :data:`MAX_DEPTH` (32) levels of nesting: parentheses, runs of signs, and levels of
  the syntax tree. A flat chain such as ``a + b - c + d`` or ``a*b/c`` counts as one level, so
  long sums of terms are fine;
* a constant exponent must lie within ``[-MAX_EXPONENT, MAX_EXPONENT]`` (64), so ``10**1000000``
  and ``9**9**9**9`` are rejected. All arithmetic is done in float64, never on Python integers,
  so even an accepted expression cannot build a huge number;
* every constant sub-expression (no free variable) is folded at parse time in float64 and must
  give a finite real number: ``1/0``, ``sqrt(-1)``, ``log(0)`` and ``1e300*1e300`` are errors.

Expressions that involve variables are not checked for division by zero or overflow at
evaluation time: those follow numpy/torch semantics (``inf``/``nan``), as in hand-written code.
"""
from __future__ import annotations

import ast
import math
import numbers
import operator
import re
import warnings
from types import MappingProxyType
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["ExpressionError", "Expression", "FUNCTIONS", "CONSTANTS", "parse", "constant",
           "MAX_LENGTH", "MAX_DEPTH", "MAX_EXPONENT"]

MAX_LENGTH = 2000
"""Longest accepted source, in characters."""

MAX_DEPTH = 32
"""Deepest accepted nesting (parentheses, sign runs, syntax-tree levels)."""

MAX_EXPONENT = 64.0
"""Largest accepted absolute value of a constant exponent."""


class ExpressionError(ValueError):
    """An expression from the config is malformed, not allowed, or cannot be evaluated.

    The message is one line, of the form
    ``"<key>: <problem> at column <c>: '<token>' in '<source>'"`` (column and token are left
    out where there is no single offending token), sometimes followed by a hint such as the
    list of allowed names.

    Attributes:
        key: the config key the expression came from.
        problem: what is wrong, in words.
        column: 1-based column of the offending token, or None.
        token: the offending token, or None.
        source: the expression text.
    """

    def __init__(self, message: str, *, key: Optional[str] = None, problem: Optional[str] = None,
                 column: Optional[int] = None, token: Optional[str] = None,
                 source: Optional[str] = None):
        # Only the message goes to ValueError so that pickling (which calls cls(*args)) works.
        super().__init__(message)
        self.key = key
        self.problem = problem
        self.column = column
        self.token = token
        self.source = source


def _show(text: str, limit: int = 80) -> str:
    """Text fit for a one-line message: control characters escaped, long text shortened."""
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _error(key: str, problem: str, source: str, column: Optional[int] = None,
           token: Optional[str] = None, hint: Optional[str] = None) -> ExpressionError:
    """Build an :class:`ExpressionError` with the standard one-line message."""
    where = ""
    if token is not None:
        where = f" at column {column}: '{_show(token, 40)}'" if column is not None \
            else f": '{_show(token, 40)}'"
    message = f"{key}: {problem}{where} in '{_show(source)}'"
    if hint:
        message += f"; {hint}"
    return ExpressionError(message, key=key, problem=problem, column=column, token=token,
                           source=source)


# --------------------------------------------------------------------------- functions

def _sech_torch(x: torch.Tensor) -> torch.Tensor:
    # 2 e^-|x| / (1 + e^-2|x|) equals 1/cosh(x) but cannot overflow for large |x| (where
    # 1/cosh would give nan gradients). |x| is spelled with where() rather than abs(): abs has
    # derivative 0 at x = 0, which would make every second derivative of sech wrong there.
    a = torch.exp(-torch.where(x >= 0, x, -x))
    return 2.0 * a / (1.0 + a * a)


def _sech_numpy(x):
    a = np.exp(-np.abs(x))
    return 2.0 * a / (1.0 + a * a)


FUNCTIONS: Dict[str, Tuple[Callable, Callable]] = {
    "sin": (torch.sin, np.sin),
    "cos": (torch.cos, np.cos),
    "tan": (torch.tan, np.tan),
    "arcsin": (torch.asin, np.arcsin),
    "arccos": (torch.acos, np.arccos),
    "arctan": (torch.atan, np.arctan),
    "sinh": (torch.sinh, np.sinh),
    "cosh": (torch.cosh, np.cosh),
    "tanh": (torch.tanh, np.tanh),
    "sech": (_sech_torch, _sech_numpy),
    "exp": (torch.exp, np.exp),
    "log": (torch.log, np.log),
    "sqrt": (torch.sqrt, np.sqrt),
    "abs": (torch.abs, np.abs),
}
"""Callable names -> (torch implementation, numpy implementation). Each takes one argument."""

CONSTANTS: Dict[str, float] = {"pi": math.pi, "e": math.e}
"""Named constants usable in any expression."""

_TORCH, _NUMPY = 0, 1  # backend index into the FUNCTIONS tuples

# A decimal literal as written in the source. Python also accepts 0x10, 1_000 and 1j; those are
# refused so that the config reads the same to a reader who does not know Python.
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_OPERATORS = ("**", "//", "<<", ">>", "<=", ">=", "==", "!=", ":=", "->")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub,
           ast.Mult: operator.mul, ast.Div: operator.truediv}
_CHAIN_GROUP = {ast.Add: "sum", ast.Sub: "sum", ast.Mult: "product", ast.Div: "product"}

# Node kinds outside the grammar, with the words used to refuse them.
_REFUSED = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.Slice: "slices are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "boolean operators are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.NamedExpr: "assignment expressions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Set: "sets are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}


# --------------------------------------------------------------------------- evaluation nodes

class _Const:
    """A folded constant: a float known at parse time."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = value


# A compiled node is either a _Const or fn(values, backend) -> value.
_Node = Union[_Const, Callable[[Mapping[str, Any], int], Any]]


def _as_fn(node: _Node) -> Callable[[Mapping[str, Any], int], Any]:
    """The node as a closure, so that chains can treat all terms alike."""
    if isinstance(node, _Const):
        value = node.value
        return lambda values, backend: value
    return node


class _Builder:
    """Checks a parsed tree against the grammar and compiles it into closures.

    Columns inside the tree are 0-based offsets into ``text`` (the source with leading
    whitespace removed); ``lead`` converts them back to 1-based columns of the source.
    """

    def __init__(self, source: str, text: str, lead: int, allowed: FrozenSet[str], key: str):
        self.source = source
        self.text = text
        self.lead = lead
        self.allowed = allowed
        self.key = key
        self.positions: Dict[str, int] = {}  # name -> 1-based column of its first use

    # ----- messages

    def column(self, offset: int) -> int:
        return self.lead + offset + 1

    def segment(self, node: ast.AST) -> str:
        return self.text[node.col_offset:node.end_col_offset]

    def fail(self, problem: str, offset: Optional[int], token: Optional[str],
             hint: Optional[str] = None) -> ExpressionError:
        column = None if offset is None else self.column(offset)
        return _error(self.key, problem, self.source, column, token, hint)

    def fail_at(self, node: ast.AST, problem: str, hint: Optional[str] = None) -> ExpressionError:
        return self.fail(problem, node.col_offset, self.segment(node), hint)

    def token_between(self, start: int, end: int) -> Tuple[int, str]:
        """The first operator or keyword between two offsets, skipping spaces and parentheses."""
        text = self.text
        i = start
        while i < end and text[i] in " \t()":
            i += 1
        if i >= end:
            return start, text[start:end].strip() or text[start:start + 1]
        if text[i].isalnum() or text[i] == "_":
            j = i
            while j < end and (text[j].isalnum() or text[j] == "_"):
                j += 1
            return i, text[i:j]
        for op in _OPERATORS:
            if text.startswith(op, i):
                return i, op
        return i, text[i]

    def names_hint(self) -> str:
        names = ", ".join(sorted(self.allowed)) or "(none)"
        return f"allowed names: {names}; constants: {', '.join(sorted(CONSTANTS))}"

    @staticmethod
    def functions_hint() -> str:
        return f"allowed functions: {', '.join(sorted(FUNCTIONS))}"

    # ----- constant folding

    def fold(self, node: ast.AST, fn: Callable, *args: float) -> _Const:
        """Evaluate ``fn(*args)`` in float64 at parse time; refuse non-finite results."""
        try:
            with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
                value = float(fn(*(np.float64(a) for a in args)))
        except (FloatingPointError, ZeroDivisionError, OverflowError, ValueError) as exc:
            reason = str(exc)
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and (
                    "divide by zero" in reason or "invalid value" in reason):
                problem = "division by zero in constant sub-expression"
            elif "overflow" in reason or isinstance(exc, OverflowError):
                problem = "constant sub-expression overflows float64"
            elif "invalid value" in reason:
                problem = "constant sub-expression has no real value"
            else:  # log(0), 0**-1: a pole
                problem = "constant sub-expression is not finite"
            raise self.fail_at(node, problem) from None
        if not math.isfinite(value):
            raise self.fail_at(node, "constant sub-expression is not finite")
        return _Const(value)

    # ----- compilation

    def build(self, node: ast.AST, depth: int) -> _Node:
        """Compile one node, refusing anything outside the grammar.

        ``depth`` counts the operators and calls enclosing the node (0 at the root).
        """
        if depth > MAX_DEPTH:
            raise self.fail_at(node, f"expression is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.BinOp):
            if type(node.op) in _CHAIN_GROUP:
                return self.build_chain(node, depth)
            if isinstance(node.op, ast.Pow):
                return self.build_power(node, depth)
            offset, token = self.token_between(node.left.end_col_offset, node.right.col_offset)
            raise self.fail(f"operator '{token}' is not allowed", offset, token,
                            "allowed operators: + - * / **")
        if isinstance(node, ast.UnaryOp):
            return self.build_unary(node, depth)
        if isinstance(node, ast.Constant):
            return self.build_constant(node)
        if isinstance(node, ast.Name):
            return self.build_name(node)
        if isinstance(node, ast.Call):
            return self.build_call(node, depth)
        raise self.refuse(node)

    def build_chain(self, node: ast.BinOp, depth: int) -> _Node:
        """A left-associative run of + - (or * /) as one level, so long sums do not nest."""
        group = _CHAIN_GROUP[type(node.op)]
        steps: List[ast.BinOp] = []
        head: ast.AST = node
        # Walk the left spine iteratively: Python parses a+b+c+d as ((a+b)+c)+d.
        while isinstance(head, ast.BinOp) and _CHAIN_GROUP.get(type(head.op)) == group:
            steps.append(head)
            head = head.left
        steps.reverse()
        acc = self.build(head, depth + 1)
        rest = []
        for step in steps:
            term = self.build(step.right, depth + 1)
            op = _BINARY[type(step.op)]
            if isinstance(acc, _Const) and isinstance(term, _Const) and not rest:
                # Only a leading constant run is folded: folding later ones would reorder
                # floating-point operations relative to the written left-to-right order.
                acc = self.fold(step, op, acc.value, term.value)
            else:
                rest.append((op, _as_fn(term)))
        if not rest:
            return acc
        first = _as_fn(acc)
        ops = tuple(rest)

        def chain(values, backend):
            result = first(values, backend)
            for op, fn in ops:
                result = op(result, fn(values, backend))
            return result
        return chain

    def build_power(self, node: ast.BinOp, depth: int) -> _Node:
        base = self.build(node.left, depth + 1)
        exponent = self.build(node.right, depth + 1)
        if isinstance(exponent, _Const) and abs(exponent.value) > MAX_EXPONENT:
            # Checked on the folded float exponent, before any power is taken.
            raise self.fail_at(node.right, f"constant exponent {exponent.value:g} is outside "
                                           f"[-{MAX_EXPONENT:g}, {MAX_EXPONENT:g}]")
        if isinstance(base, _Const) and isinstance(exponent, _Const):
            return self.fold(node, operator.pow, base.value, exponent.value)
        b, x = _as_fn(base), _as_fn(exponent)
        return lambda values, backend: b(values, backend) ** x(values, backend)

    def build_unary(self, node: ast.UnaryOp, depth: int) -> _Node:
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            token = "not" if isinstance(node.op, ast.Not) else "~"
            raise self.fail(f"operator '{token}' is not allowed", node.col_offset, token,
                            "allowed operators: + - * / **")
        operand = self.build(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(operand, _Const):
            return _Const(-operand.value)
        fn = operand
        return lambda values, backend: -fn(values, backend)

    def build_constant(self, node: ast.Constant) -> _Const:
        value = node.value
        if isinstance(value, bool) or value is None:
            raise self.fail_at(node, f"{value} is not allowed")
        if isinstance(value, (str, bytes)):
            raise self.fail_at(node, "strings are not allowed")
        if isinstance(value, complex):
            raise self.fail_at(node, "complex numbers are not allowed")
        if not isinstance(value, (int, float)):
            raise self.fail_at(node, f"literal {self.segment(node)!r} is not allowed")
        if not _NUMBER.match(self.segment(node)):
            raise self.fail_at(node, "only decimal numbers are allowed")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.fail_at(node, "number is out of the float64 range")
        return _Const(number)

    def build_name(self, node: ast.Name) -> _Node:
        name = node.id
        if name in CONSTANTS:
            return _Const(CONSTANTS[name])
        if name in self.allowed:
            self.positions.setdefault(name, self.column(node.col_offset))
            return lambda values, backend: values[name]
        if name in FUNCTIONS:
            raise self.fail_at(node, f"function '{name}' needs an argument, as in {name}(x)")
        raise self.fail_at(node, f"unknown name '{name}'", self.names_hint())

    def build_call(self, node: ast.Call, depth: int) -> _Node:
        func = node.func
        if not isinstance(func, ast.Name):
            if type(func) in _REFUSED:
                raise self.refuse(func)
            raise self.fail_at(func, "only named functions can be called",
                               self.functions_hint())
        name = func.id
        if name not in FUNCTIONS:
            if name in self.allowed or name in CONSTANTS:
                problem = f"'{name}' is not a function"
            else:
                problem = f"unknown function '{name}'"
            raise self.fail_at(func, problem, self.functions_hint())
        if node.keywords:
            kw = node.keywords[0]
            token = kw.arg if kw.arg is not None else "**"
            raise self.fail(f"keyword arguments are not allowed in {name}()", kw.col_offset,
                            token)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail("starred arguments are not allowed", arg.col_offset, "*")
        if len(node.args) != 1:
            raise self.fail_at(func, f"{name}() takes 1 argument, got {len(node.args)}")
        arg = self.build(node.args[0], depth + 1)
        impls = FUNCTIONS[name]
        if isinstance(arg, _Const):
            return self.fold(node, impls[_NUMPY], arg.value)
        fn = arg
        return lambda values, backend: impls[backend](fn(values, backend))

    def refuse(self, node: ast.AST) -> ExpressionError:
        """The error for a node kind outside the grammar, pointing at its telling token."""
        problem = _REFUSED.get(type(node), f"{type(node).__name__} is not allowed")
        t = self.text
        if isinstance(node, ast.Attribute):
            offset = node.end_col_offset - len(node.attr)
            return self.fail(problem, offset, node.attr)
        if isinstance(node, ast.Subscript):
            offset = t.find("[", node.value.end_col_offset)
            return self.fail(problem, offset, "[")
        if isinstance(node, ast.Lambda):
            return self.fail(problem, node.col_offset, "lambda")
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            elt = node.value if isinstance(node, ast.DictComp) else node.elt
            offset, token = self.token_between(elt.end_col_offset,
                                               node.generators[0].target.col_offset)
            return self.fail(problem, offset, token)
        if isinstance(node, ast.Compare):
            return self.fail(problem, *self.token_between(node.left.end_col_offset,
                                                          node.comparators[0].col_offset))
        if isinstance(node, ast.BoolOp):
            return self.fail(problem, *self.token_between(node.values[0].end_col_offset,
                                                          node.values[1].col_offset))
        if isinstance(node, ast.IfExp):
            return self.fail(problem, *self.token_between(node.body.end_col_offset,
                                                          node.test.col_offset))
        if isinstance(node, ast.NamedExpr):
            return self.fail(problem, *self.token_between(node.target.end_col_offset,
                                                          node.value.col_offset))
        if isinstance(node, ast.Tuple) and len(node.elts) >= 2:
            return self.fail(problem, *self.token_between(node.elts[0].end_col_offset,
                                                          node.elts[1].col_offset))
        if isinstance(node, ast.Starred):
            return self.fail(problem, node.col_offset, "*")
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom)):
            return self.fail(problem, *self.token_between(node.col_offset, node.end_col_offset))
        return self.fail_at(node, problem)


# --------------------------------------------------------------------------- public API

class Expression:
    """A checked expression, ready to evaluate many times.

    Create one with :func:`parse`.

    Attributes:
        source: the expression text as written in the config.
        key: the config key it came from, used in error messages.
        names: the free variable names it uses (constants and functions excluded).
    """

    def __init__(self, source: str, key: str, node: _Node, positions: Mapping[str, int]):
        self.source = source
        self.key = key
        self.names: FrozenSet[str] = frozenset(positions)
        self._node = node
        self._positions = dict(positions)

    def is_constant(self) -> bool:
        """Whether the expression uses no variable (its value was folded at parse time)."""
        return isinstance(self._node, _Const)

    def __call__(self, env: Mapping[str, object]):
        """Evaluate the expression.

        Args:
            env: maps every name in :attr:`names` to a float, numpy array or torch tensor.
                Extra entries are ignored.

        Returns:
            A torch tensor if any used variable is a tensor (non-tensor values are converted
            to the first tensor's device), else a numpy array or numpy float64; a constant
            expression returns a Python float.

        Raises:
            ExpressionError: a variable is missing or of an unusable type, or numpy/torch
                refused the operation (for instance on mismatched shapes).
        """
        missing = sorted((n for n in self.names if n not in env), key=self._positions.get)
        if missing:
            first = missing[0]
            listed = ", ".join(f"'{n}'" for n in missing)
            raise _error(self.key, f"no value given for variable {listed}", self.source,
                         self._positions[first], first)
        if isinstance(self._node, _Const):
            return self._node.value
        order = sorted(self.names)
        ref = next((env[n] for n in order if isinstance(env[n], torch.Tensor)), None)
        backend = _NUMPY if ref is None else _TORCH
        values = {n: self._coerce(n, env[n], ref) for n in order}
        try:
            return self._node(values, backend)
        except (RuntimeError, ValueError, TypeError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise _error(self.key, f"evaluation failed ({_show(reason, 120)})",
                         self.source) from exc

    def _coerce(self, name: str, value: object, ref: Optional[torch.Tensor]):
        """One variable's value in the form the chosen backend computes with."""
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
            if value.dtype.kind != "f":
                # Integer arrays would wrap around on overflow and refuse negative powers.
                value = value.astype(np.float64)
            return value if ref is None else torch.as_tensor(value, device=ref.device)
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            if ref is None:
                # numpy scalars follow numpy's inf/nan rules; Python floats would raise on 1/0.
                return np.float64(value)
            dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
            # Filled on the device: no host-to-device copy (nor a synchronization) per call.
            return torch.full((), float(value), dtype=dtype, device=ref.device)
        raise _error(self.key, f"variable '{name}' must be a number, numpy array or torch "
                               f"tensor, not {type(value).__name__}", self.source,
                     self._positions[name], name)

    def __reduce__(self):
        # Closures do not pickle; re-parsing the source restores an equal expression.
        return (parse, (self.source, sorted(self.names), self.key))

    def __repr__(self) -> str:
        return f"Expression({self.source!r}, key={self.key!r})"


def _prescan(source: str, key: str) -> None:
    """Cheap character-level checks that must pass before the text reaches the parser."""
    if len(source) > MAX_LENGTH:
        raise _error(key, f"expression is {len(source)} characters long, more than the limit "
                          f"of {MAX_LENGTH}", source, MAX_LENGTH + 1, source[MAX_LENGTH])
    if not source.strip():
        raise _error(key, "expression is empty", source)
    depth = 0
    signs = 0
    for i, ch in enumerate(source):
        if not (" " <= ch <= "~" or ch == "\t"):
            problem = "non-ASCII character" if ord(ch) > 127 else "control character"
            raise _error(key, f"{problem} is not allowed", source, i + 1, ch)
        if ch == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise _error(key, f"expression is nested deeper than {MAX_DEPTH} levels",
                             source, i + 1, ch)
        elif ch == ")":
            depth -= 1
        # A run of signs nests unary operators; Python's parser recurses once per sign.
        if ch in "+-":
            signs += 1
            if signs > MAX_DEPTH:
                raise _error(key, f"more than {MAX_DEPTH} signs in a row", source, i + 1, ch)
        elif ch not in " \t":
            signs = 0


def _syntax_token(text: str, offset: int) -> str:
    """The word or character at a 0-based offset of the text, for syntax-error messages."""
    if offset >= len(text):
        return "end of input"
    if text[offset].isalnum() or text[offset] in "_.":
        j = offset
        while j < len(text) and (text[j].isalnum() or text[j] in "_."):
            j += 1
        return text[offset:j]
    return text[offset]


def parse(source: str, allowed_names: Iterable[str], key: str = "expression") -> Expression:
    """Parse and check an expression once, for repeated evaluation.

    Args:
        source: the expression text, e.g. ``"u_t + u*u_x - nu*u_xx"``.
        allowed_names: the variable names the expression may use (besides the constants).
        key: the config key the text came from, used in every error message.

    Returns:
        The checked :class:`Expression`.

    Raises:
        ExpressionError: the text is not in the grammar described in the module docstring,
            uses a name or function that is not allowed, exceeds a limit, or has a constant
            sub-expression without a finite real value. The message names ``key``, the
            offending token and its column.
    """
    if not isinstance(source, str):
        raise _error(key, f"expected an expression string, got {type(source).__name__}",
                     repr(source))
    allowed = frozenset(allowed_names)
    for name in sorted(allowed, key=str):
        if not isinstance(name, str) or not _IDENT.match(name) or name.startswith("__"):
            raise _error(key, f"invalid variable name {name!r}", source)
        if name in CONSTANTS or name in FUNCTIONS:
            raise _error(key, f"variable name '{name}' clashes with a built-in "
                              f"{'constant' if name in CONSTANTS else 'function'}", source)
    _prescan(source, key)
    # Leading whitespace would be an IndentationError; strip it and shift columns back.
    text = source.lstrip(" \t")
    lead = len(source) - len(text)
    try:
        with warnings.catch_warnings():
            # The parser may warn (e.g. about '1(x)'); the checks below refuse such input.
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        offset = (exc.offset or 0) - 1
        if offset < 0 or offset > len(text):
            offset = len(text)
        reason = (exc.msg or "invalid syntax").split("\n")[0]
        raise _error(key, f"syntax error ({reason})", source, lead + offset + 1,
                     _syntax_token(text, offset)) from None
    except (RecursionError, MemoryError):
        raise _error(key, "expression is too deeply nested to parse", source) from None
    builder = _Builder(source, text, lead, allowed, key)
    node = builder.build(tree.body, 0)
    return Expression(source, key, node, builder.positions)


def constant(source: Union[str, float, int], key: str = "expression",
             names: Mapping[str, float] = MappingProxyType({})) -> float:
    """Evaluate a constant from the config: a number, or an expression such as ``"0.01/pi"``.

    Args:
        source: a number (passed through as float) or an expression string.
        key: the config key, used in error messages.
        names: named values the expression may use, e.g. other parameters.

    Returns:
        The value as a finite Python float.

    Raises:
        ExpressionError: the expression is invalid, uses an unknown name, divides by zero,
            or does not give a finite real number.
    """
    if isinstance(source, (bool, np.bool_)):
        raise _error(key, "expected a number or an expression, got a boolean", str(source))
    if isinstance(source, numbers.Real):
        value = float(source)
        if not math.isfinite(value):
            raise _error(key, f"value {value} is not a finite number", str(source))
        return value
    if not isinstance(source, str):
        raise _error(key, f"expected a number or an expression, got {type(source).__name__}",
                     _show(repr(source)))
    # Keys that are not identifiers cannot be referenced, so they need not be offered.
    usable = [n for n in names if isinstance(n, str) and _IDENT.match(n) and not n.startswith("__")]
    expr = parse(source, usable, key)
    env = {}
    for name in expr.names:
        value = names[name]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise _error(key, f"'{name}' must be a number, not {type(value).__name__}", source,
                         expr._positions[name], name)
        env[name] = value
    try:
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            value = float(expr(env))
    except (FloatingPointError, ZeroDivisionError, OverflowError) as exc:
        reason = str(exc).replace("scalar ", "")  # e.g. "divide by zero encountered in log"
        raise _error(key, f"evaluation failed ({reason})", source) from None
    if not math.isfinite(value):
        raise _error(key, f"expression evaluates to {value}, not a finite number", source)
    return value
