"""The config expression language: values, autograd, names, limits and hostile input."""
from __future__ import annotations

import ast
import math
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pinn import expressions
from pinn.expressions import (CONSTANTS, FUNCTIONS, MAX_DEPTH, MAX_EXPONENT, MAX_LENGTH,
                              Expression, ExpressionError, constant, parse)

NAMES = ("x", "t", "u", "u_t", "u_x", "u_xx", "nu")
KEY = "pde.residual"


def _env_numpy():
    rng = np.random.default_rng(0)
    return {
        "x": rng.uniform(-1.0, 1.0, 50),
        "t": rng.uniform(0.0, 1.0, 50),
        "u": rng.uniform(0.1, 2.0, 50),
        "u_t": rng.normal(size=50),
        "u_x": rng.normal(size=50),
        "u_xx": rng.normal(size=50),
        "nu": 0.01 / math.pi,
    }


# Each expression with the same computation written directly in numpy (same operation order).
VALUE_CASES = [
    ("u_t + u*u_x - nu*u_xx", lambda x, t, u, u_t, u_x, u_xx, nu: u_t + u * u_x - nu * u_xx),
    ("x**2*cos(pi*x)", lambda x, t, u, u_t, u_x, u_xx, nu: x ** 2 * np.cos(np.pi * x)),
    ("-sin(pi*x)", lambda x, t, u, u_t, u_x, u_xx, nu: -np.sin(np.pi * x)),
    ("exp(-t)*sin(2*pi*x)",
     lambda x, t, u, u_t, u_x, u_xx, nu: np.exp(-t) * np.sin(2 * np.pi * x)),
    ("sqrt(u) + log(u) - abs(x)",
     lambda x, t, u, u_t, u_x, u_xx, nu: np.sqrt(u) + np.log(u) - np.abs(x)),
    ("tanh(x/nu) * sech(x)**2",
     lambda x, t, u, u_t, u_x, u_xx, nu: np.tanh(x / nu) * (1 / np.cosh(x)) ** 2),
    ("(u - 1)/(u + 1)", lambda x, t, u, u_t, u_x, u_xx, nu: (u - 1) / (u + 1)),
    ("u**0.5 + u**-2", lambda x, t, u, u_t, u_x, u_xx, nu: u ** 0.5 + u ** -2),
    ("2**x", lambda x, t, u, u_t, u_x, u_xx, nu: 2.0 ** x),
    ("u**t", lambda x, t, u, u_t, u_x, u_xx, nu: u ** t),
    ("arcsin(x/2) + arccos(x/2) + arctan(x)",
     lambda x, t, u, u_t, u_x, u_xx, nu: np.arcsin(x / 2) + np.arccos(x / 2) + np.arctan(x)),
    ("sinh(x) - cosh(x) + tan(x/2)",
     lambda x, t, u, u_t, u_x, u_xx, nu: np.sinh(x) - np.cosh(x) + np.tan(x / 2)),
    ("e**x - exp(x)", lambda x, t, u, u_t, u_x, u_xx, nu: np.e ** x - np.exp(x)),
    ("1e-4*u_xx + 2.5E+3*x + .5*t + 3.*u",
     lambda x, t, u, u_t, u_x, u_xx, nu: 1e-4 * u_xx + 2.5e3 * x + 0.5 * t + 3.0 * u),
    ("x - t - u", lambda x, t, u, u_t, u_x, u_xx, nu: x - t - u),
    ("x/t/u*u_x", lambda x, t, u, u_t, u_x, u_xx, nu: x / t / u * u_x),
    ("1 + 2 + x", lambda x, t, u, u_t, u_x, u_xx, nu: 3 + x),
    ("-(-x)", lambda x, t, u, u_t, u_x, u_xx, nu: x),
    ("+x - -t", lambda x, t, u, u_t, u_x, u_xx, nu: x + t),
    ("  x*t\t", lambda x, t, u, u_t, u_x, u_xx, nu: x * t),
    ("0.01/pi*u_xx", lambda x, t, u, u_t, u_x, u_xx, nu: 0.01 / np.pi * u_xx),
]


@pytest.mark.parametrize("source, direct", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_numpy_values_match_direct_computation(source, direct):
    env = _env_numpy()
    got = parse(source, NAMES, KEY)(env)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, direct(**env), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("source, direct", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_torch_values_match_direct_computation(source, direct):
    env = _env_numpy()
    tenv = {k: torch.as_tensor(v, dtype=torch.float64) if isinstance(v, np.ndarray) else v
            for k, v in env.items()}
    got = parse(source, NAMES, KEY)(tenv)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), direct(**env), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_agrees_across_backends(name):
    x = np.linspace(-0.9, 0.9, 19)
    if name in ("log", "sqrt"):
        x = x + 1.0
    expected = {"sech": lambda v: 1.0 / np.cosh(v)}.get(name, getattr(np, name, None))(x)
    expr = parse(f"{name}(x)", ["x"], KEY)
    np.testing.assert_allclose(expr({"x": x}), expected, rtol=1e-14)
    np.testing.assert_allclose(expr({"x": torch.from_numpy(x)}).numpy(), expected, rtol=1e-12)


def test_sech_is_stable_for_large_arguments():
    expr = parse("sech(x)", ["x"], KEY)
    with np.errstate(over="raise"):  # a naive 1/cosh would overflow here
        np.testing.assert_array_equal(expr({"x": np.array([800.0, -800.0])}), [0.0, 0.0])
    assert constant("sech(1000)") == 0.0
    x = torch.tensor([-800.0, 0.0, 800.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(parse("sech(x)", ["x"], KEY)({"x": x}).sum(), x)
    torch.testing.assert_close(g, torch.zeros(3, dtype=torch.float64))


def test_scalar_inputs_give_numpy_scalars():
    got = parse("x*t + 1", ["x", "t"], KEY)({"x": 2.0, "t": 3})
    assert isinstance(got, np.float64) and got == 7.0
    # numpy semantics for scalars too: no Python ZeroDivisionError
    with np.errstate(divide="ignore"):
        assert parse("1/x", ["x"], KEY)({"x": 0.0}) == math.inf


def test_integer_arrays_are_computed_in_float():
    got = parse("x**-1", ["x"], KEY)({"x": np.array([2, 4])})
    np.testing.assert_array_equal(got, [0.5, 0.25])


def test_mixed_numpy_and_torch_inputs_use_torch():
    x = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    u = np.linspace(1.0, 2.0, 5)
    got = parse("x*u + c", ["x", "u", "c"], KEY)({"x": x, "u": u, "c": 2.0})
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), x.numpy() * u + 2.0, rtol=1e-15)


def test_float32_tensors_stay_float32():
    x = torch.linspace(0.0, 1.0, 5)
    got = parse("sin(x)*k", ["x", "k"], KEY)({"x": x, "k": 2.0})
    assert got.dtype == torch.float32


def test_autograd_flows_through_expression():
    x = torch.linspace(-2.0, 2.0, 11, dtype=torch.float64, requires_grad=True)
    u = torch.linspace(0.5, 1.5, 11, dtype=torch.float64, requires_grad=True)
    out = parse("sin(x)*u**2", ["x", "u"], KEY)({"x": x, "u": u})
    gx, gu = torch.autograd.grad(out.sum(), (x, u))
    with torch.no_grad():
        torch.testing.assert_close(gx, torch.cos(x) * u ** 2, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(gu, 2 * torch.sin(x) * u, rtol=1e-14, atol=1e-14)


def test_autograd_second_derivative_through_sech():
    x = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64, requires_grad=True)
    y = parse("sech(x)", ["x"], KEY)({"x": x})
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    with torch.no_grad():
        s, th = 1 / torch.cosh(x), torch.tanh(x)
        torch.testing.assert_close(g, -s * th, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(gg, s * th ** 2 - s ** 3, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("source, names", [
    ("u_t + u*u_x - nu*u_xx", {"u_t", "u", "u_x", "nu", "u_xx"}),
    ("x**2*cos(pi*x)", {"x"}),
    ("sin(e*t) + t", {"t"}),
    ("0.01/pi", set()),
    ("exp(2)", set()),
])
def test_names_are_exactly_the_variables_used(source, names):
    expr = parse(source, NAMES, KEY)
    assert expr.names == frozenset(names)
    assert isinstance(expr.names, frozenset)
    assert expr.is_constant() == (not names)
    assert expr.source == source and expr.key == KEY


def test_constant_expressions_are_folded():
    expr = parse("0.01/pi", [], "pde.nu")
    assert expr.is_constant()
    assert expr({}) == 0.01 / math.pi
    assert isinstance(expr({}), float)
    assert constant("0.01/pi", "pde.nu") == 0.01 / math.pi
    assert constant("2*pi*e") == 2 * math.pi * math.e


@pytest.mark.parametrize("source, value", [
    ("-2**2", -4.0),        # -(2**2)
    ("2**-1", 0.5),
    ("2*3**2", 18.0),
    ("2**3**2", 512.0),     # right-associative
    ("(2**3)**2", 64.0),
    ("8/4/2", 1.0),         # left-associative
    ("8-4-2", 2.0),
    ("1+2*3", 7.0),
    ("-3**-2", -1 / 9),
    ("--2", 2.0),
    ("+-+2", -2.0),
    ("(((1)))", 1.0),
])
def test_operator_precedence(source, value):
    assert constant(source, KEY) == pytest.approx(value, rel=1e-15, abs=0)


def test_variable_precedence_matches_python():
    x = np.linspace(-2.0, 2.0, 9)
    np.testing.assert_array_equal(parse("-x**2", ["x"], KEY)({"x": x}), -(x ** 2))
    np.testing.assert_array_equal(parse("x**-1*2", ["x"], KEY)({"x": x + 5}), (x + 5) ** -1 * 2)


def test_constant_passes_numbers_through():
    assert constant(3) == 3.0 and isinstance(constant(3), float)
    assert constant(0.25) == 0.25
    assert constant(np.float32(0.5)) == 0.5


def test_constant_with_named_values():
    params = {"L": 2.0, "nu0": 0.1, "not an identifier": 1.0}
    assert constant("nu0/L**2", "pde.nu", params) == pytest.approx(0.025, rel=1e-15)
    with pytest.raises(ExpressionError, match=r"pde\.nu: unknown name 'M'.*allowed names: L, nu0"):
        constant("M*2", "pde.nu", params)


@pytest.mark.parametrize("source, names, token", [
    ("1/0", {}, "1/0"),
    ("a/b", {"a": 1.0, "b": 0.0}, None),
    ("log(a)", {"a": 0.0}, None),
    ("a", {"a": math.inf}, None),
    ("a", {"a": math.nan}, None),
    ("a*a", {"a": 1e200}, None),
    ("sqrt(-1)", {}, "sqrt(-1)"),
    ("a", {"a": "1.0"}, "a"),
    ("a", {"a": True}, "a"),
])
def test_constant_rejects_non_finite_results(source, names, token):
    with pytest.raises(ExpressionError) as info:
        constant(source, "pde.nu", names)
    assert str(info.value).startswith("pde.nu: ")
    if token:
        assert f"'{token}'" in str(info.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, None, [1.0], b"1"])
def test_constant_rejects_bad_values(value):
    with pytest.raises(ExpressionError, match=r"^pde\.nu: "):
        constant(value, "pde.nu")


# Hostile or invalid input, with a token the message must show (None: no single token).
HOSTILE = [
    ("__import__('os')", "__import__"),
    ("__import__('os').system('ls')", "system"),
    ("u.__class__", "__class__"),
    ("u.__class__.__mro__[1].__subclasses__()", "__subclasses__"),
    ("x.real", "real"),
    ("1 .real", "real"),
    ("open('f')", "open"),
    ("eval('1')", "eval"),
    ("exec('1')", "exec"),
    ("compile('1', 'f', 'eval')", "compile"),
    ("getattr(u, 'x')", "getattr"),
    ("globals()", "globals"),
    ("__builtins__", "__builtins__"),
    ("lambda: 1", "lambda"),
    ("(lambda: 1)()", "lambda"),
    ("[x for x in u]", "for"),
    ("(x for x in u)", "for"),
    ("{x: 1 for x in u}", "for"),
    ("u[0]", "["),
    ("u[0:2]", "["),
    ("sin(x=1)", "x"),
    ("sin(**u)", "**"),
    ("sin(*u)", "*"),
    ("'abc'", "'abc'"),
    ('"abc"', '"abc"'),
    ("b'abc'", "b'abc'"),
    ("f'{x}'", "f'{x}'"),
    ("x < 1", "<"),
    ("x == u", "=="),
    ("x is u", "is"),
    ("x in u", "in"),
    ("x and u", "and"),
    ("x or u", "or"),
    ("not x", "not"),
    ("~x", "~"),
    ("x if u else 1", "if"),
    ("(y := 1)", ":="),
    ("1; import os", ";"),
    ("import os", "import"),
    ("x = 1", "="),
    ("", None),
    ("   ", None),
    ("\t", None),
    ("x +", "end of input"),
    ("sin(x", "("),
    ("x)", ")"),
    ("1x", "1x"),
    ("9**9**9**9", "9**9"),
    ("10**1000000", "1000000"),
    ("2**65", "65"),
    ("x**-100", "-100"),
    ("x**(10*10)", "10*10"),
    ("x" * (MAX_LENGTH + 1), "x"),
    ("x+" * 5000 + "x", None),
    ("(" * 10000 + "x" + ")" * 10000, "("),
    ("-" * 10000 + "x", "-"),
    ("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), "("),
    ("-" * (MAX_DEPTH + 1) + "x", "-"),
    ("- " * (MAX_DEPTH + 1) + "x", "-"),
    ("x**" * 600 + "x", None),
    ("sin(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), None),
    ("x" + "[0]" * 600, "["),
    ("x" + ".a" * 900, "a"),
    ("\u00fc + x", "\u00fc"),
    ("\uff58", "\uff58"),       # fullwidth x, which Python would normalise to 'x'
    ("x\u00b2", "\u00b2"),
    ("x\n+1", "\\n"),
    ("x\x00", "\\x00"),
    ("1j", "1j"),
    ("2+3J", "3J"),
    ("True", "True"),
    ("False", "False"),
    ("None", "None"),
    ("...", "..."),
    ("0x10", "0x10"),
    ("1_000", "1_000"),
    ("1e999", "1e999"),
    ("1" + "0" * 400, "1" + "0" * 36 + "..."),  # long tokens are shortened in messages
    ("1/0", "1/0"),
    ("x + 1/(2-2)", "1/(2-2)"),
    ("0/0", "0/0"),
    ("log(0)", "log(0)"),
    ("sqrt(-1)", "sqrt(-1)"),
    ("(-8)**(1/3)", "(-8)**(1/3)"),
    ("1e300*1e300", "1e300*1e300"),
    ("exp(1000)", "exp(1000)"),
    ("x // u", "//"),
    ("x % u", "%"),
    ("x @ u", "@"),
    ("x << u", "<<"),
    ("x ^ u", "^"),
    ("x & u", "&"),
    ("x, u", ","),
    ("[x, u]", "[x, u]"),
    ("{x}", "{x}"),
    ("{x: u}", "{x: u}"),
    ("()", "()"),
    ("sin(x, u)", "sin"),
    ("sin()", "sin"),
    ("sin", "sin"),
    ("pi(x)", "pi"),
    ("u(x)", "u"),
    ("(x+1)(2)", "x+1"),
    ("sin(x)(u)", "sin(x)"),
    ("foo", "foo"),
    ("y + x", "y"),
    ("await x", "await"),
    ("(yield x)", "yield"),
    ("x if 1 else __import__('os')", "if"),
]


@pytest.mark.parametrize("source", [h[0] for h in HOSTILE],
                         ids=[repr(h[0][:30]) for h in HOSTILE])
def test_hostile_input_is_rejected_cleanly_and_fast(source):
    token = dict(HOSTILE)[source]
    start = time.perf_counter()
    with pytest.raises(ExpressionError) as info:
        parse(source, NAMES, KEY)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    # A guard against blow-ups (huge powers, deep recursion), which take minutes or forever;
    # each input takes milliseconds, the bound leaves room for a loaded 2-core CI machine.
    assert elapsed < 2.0, f"took {elapsed:.3f} s"
    assert message.startswith(f"{KEY}: ")
    assert "\n" not in message and len(message) < 600
    if token is not None:
        assert f"'{token}'" in message
        assert " at column " in message
    assert info.value.key == KEY


@pytest.mark.parametrize("source, column, token", [
    ("x.real", 3, "real"),
    ("x + 1; y", 6, ";"),
    ("  x + ) ", 7, ")"),
    ("x + foo", 5, "foo"),
    ("x +", 4, "end of input"),
    ("   u[0]", 5, "["),
    ("x**70", 4, "70"),
    ("a\u00fc", 2, "\u00fc"),
])
def test_error_reports_one_based_column(source, column, token):
    with pytest.raises(ExpressionError) as info:
        parse(source, ["x", "u", "a"], KEY)
    assert info.value.column == column
    assert info.value.token == token
    assert f"at column {column}: '{token}'" in str(info.value)


def test_unknown_name_lists_allowed_names_sorted():
    with pytest.raises(ExpressionError) as info:
        parse("x + w", ["x", "u_t", "a"], "bc.left")
    message = str(info.value)
    assert message.startswith("bc.left: unknown name 'w' at column 5: 'w'")
    assert "allowed names: a, u_t, x; constants: e, pi" in message


def test_unknown_function_lists_allowed_functions():
    with pytest.raises(ExpressionError) as info:
        parse("open(x)", ["x"], KEY)
    assert f"allowed functions: {', '.join(sorted(FUNCTIONS))}" in str(info.value)


def test_long_input_is_rejected_before_parsing(monkeypatch):
    def no_parse(*args, **kwargs):
        raise AssertionError("parsed")
    monkeypatch.setattr(ast, "parse", no_parse)
    with pytest.raises(ExpressionError, match="more than the limit of 2000"):
        parse("x+" * 5000 + "x", ["x"], KEY)
    with pytest.raises(ExpressionError, match="non-ASCII"):
        parse("\uff58", ["x"], KEY)


def test_limits_are_inclusive():
    depth = MAX_DEPTH
    assert parse("(" * depth + "x" + ")" * depth, ["x"], KEY)({"x": 2.0}) == 2.0
    assert parse("-" * depth + "x", ["x"], KEY)({"x": 2.0}) == 2.0
    assert constant(f"2**{MAX_EXPONENT:g}") == 2.0 ** 64
    assert constant(f"2**-{MAX_EXPONENT:g}") == 2.0 ** -64
    source = "x+" * ((MAX_LENGTH - 1) // 2) + "x"
    assert len(source) <= MAX_LENGTH
    assert parse(source, ["x"], KEY)({"x": 1.0}) == (MAX_LENGTH - 1) // 2 + 1


def test_flat_chains_do_not_count_as_nesting():
    terms = [f"x{i}" for i in range(200)]
    env = {n: float(i) for i, n in enumerate(terms)}
    assert parse(" + ".join(terms), terms, KEY)(env) == sum(range(200))
    assert parse("*".join(["x"] * 300), ["x"], KEY)({"x": 1.0}) == 1.0


def test_nesting_limit_applies_to_the_syntax_tree():
    ok = "sin(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    assert parse(ok, ["x"], KEY)({"x": 0.0}) == 0.0
    with pytest.raises(ExpressionError, match="nested deeper than"):
        parse("sin(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), ["x"], KEY)
    # Powers nest without parentheses or signs, so only the tree walk can catch them.
    tower = "x**" * MAX_DEPTH + "x"
    parse(tower, ["x"], KEY)
    with pytest.raises(ExpressionError, match="nested deeper than 32 levels"):
        parse("x**" + tower, ["x"], KEY)


def test_missing_variable_is_named():
    expr = parse("u_t + nu*u_xx", NAMES, "pde.residual")
    with pytest.raises(ExpressionError) as info:
        expr({"u_t": 1.0})
    message = str(info.value)
    assert message.startswith("pde.residual: no value given for variable 'nu', 'u_xx'")
    assert "at column 7: 'nu'" in message


@pytest.mark.parametrize("value", ["1.0", [1.0, 2.0], None, True, np.array(["a"])])
def test_unusable_variable_values_are_rejected(value):
    with pytest.raises(ExpressionError, match=r"^pde\.residual: variable 'u' must be"):
        parse("u + 1", ["u"], KEY)({"u": value})


def test_backend_errors_become_expression_errors():
    expr = parse("x + u", ["x", "u"], KEY)
    with pytest.raises(ExpressionError, match="evaluation failed") as info:
        expr({"x": np.zeros(3), "u": np.zeros(4)})
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ExpressionError, match="evaluation failed"):
        expr({"x": torch.zeros(3), "u": torch.zeros(4)})


@pytest.mark.parametrize("bad", ["pi", "e", "sin", "1x", "a b", "__class__", 3])
def test_invalid_or_clashing_allowed_names_are_rejected(bad):
    with pytest.raises(ExpressionError, match="^cfg: "):
        parse("1", ["x", bad], "cfg")


def test_non_string_source_is_rejected():
    with pytest.raises(ExpressionError, match="^cfg: expected an expression string"):
        parse(1.5, [], "cfg")


def test_expression_and_error_pickle():
    expr = parse("sin(x)*u", ["x", "u", "unused"], KEY)
    clone = pickle.loads(pickle.dumps(expr))
    assert isinstance(clone, Expression)
    assert clone.source == expr.source and clone.names == expr.names and clone.key == KEY
    assert clone({"x": 1.0, "u": 2.0}) == expr({"x": 1.0, "u": 2.0})
    with pytest.raises(ExpressionError) as info:
        parse("x.y", ["x"], KEY)
    err = pickle.loads(pickle.dumps(info.value))
    assert str(err) == str(info.value) and err.token == "y" and err.column == 3


def test_constants_table():
    assert CONSTANTS == {"pi": math.pi, "e": math.e}
    assert constant("pi") == math.pi and constant("e") == math.e


def test_module_never_evaluates_code():
    # The safety argument rests on building closures from the checked tree only.
    tree = ast.parse(Path(expressions.__file__).read_text())
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr"}
