"""The Taylor engine against reverse-mode autograd (pinn.derivatives), the reference."""
import copy
import functools
import logging

import pytest
import torch
from torch import nn

import pinn.taylor as taylor
from pinn.derivatives import DERIVATIVE_KEYS, compute_derivatives
from pinn.taylor import allocator
from pinn.nn import MLP
from pinn.nn.norm import bn_layers, running_statistics_fixed, set_bn_mode, shared_batch_statistics
from pinn.taylor import (channels_for, compile_events, compile_status, reset_compiled,
                         taylor_derivatives, unsupported_reason)

F64 = torch.float64
ACTIVATIONS = ("tanh", "gelu", "sin", "silu")
BURGERS = ("U", "Ux", "Ut", "Uxx")


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def grad_rel(ga, gb):
    a = torch.cat([g.reshape(-1) for g in ga])
    b = torch.cat([g.reshape(-1) for g in gb])
    return rel(a, b)


def make(activation="tanh", norm="none", n_out=2, depth=3, width=12, dtype=F64, seed=0):
    """A random MLP on (x, t) in [-1, 1] x [0, 2]; BN layers get random affine parameters and
    running statistics so that every BN term is exercised."""
    torch.manual_seed(seed)
    model = MLP(n_out=n_out, depth=depth, width=width, activation=activation, norm=norm,
                lower=(-1.0, 0.0), upper=(1.0, 2.0)).to(dtype)
    return randomize(model)


def randomize(model):
    """Random biases, BN affine parameters and running statistics (from torch's seed)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.bias.normal_(0, 0.3)
        for bn in bn_layers(model):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.3)
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model


def points(n=64, dtype=F64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g, dtype=dtype) * 2 - 1
    t = torch.rand(n, 1, generator=g, dtype=dtype) * 2
    return x, t


def residual_loss(d):
    """The Burgers residual mean square of the first output when its keys are there, plus a
    term per key that couples it to U (so every key and output reaches every parameter)."""
    u = d["U"]
    loss = u.square().mean()
    if {"Ut", "Ux", "Uxx"} <= set(d):
        r = d["Ut"] + u * d["Ux"] - 0.1 * d["Uxx"]
        loss = loss + r[:, :1].square().mean()
    for k in sorted(set(d) - {"U"}):
        loss = loss + 0.1 * (d[k] * (1 + 0.5 * u)).square().mean()
    return loss


def both(model, x, t, needed=DERIVATIVE_KEYS, **kw):
    """(autograd, taylor) derivatives and the parameter gradients of residual_loss."""
    params = [p for p in model.parameters()]
    out = []
    for engine in (lambda: compute_derivatives(model, x, t, needed),
                   lambda: taylor_derivatives(model, x, t, needed, **kw)):
        d = engine()
        out.append((d, torch.autograd.grad(residual_loss(d), params)))
    return out


@pytest.fixture(autouse=True)
def _fresh_compile_state():
    reset_compiled()
    yield
    reset_compiled()


# -- float64 agreement ----------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("setting", ["plain", "x_requires_grad", "frozen", "eval", "detached"])
def test_agrees_with_autograd_float64(activation, setting):
    """Every derivative and every parameter gradient to 1e-12 relative, on both paths (whole
    network for plain MLPs, block by block with BN or when x, t need gradients)."""
    model = make(activation, "none" if setting in ("plain", "x_requires_grad") else "batch")
    x, t = points()
    if setting == "x_requires_grad":
        x.requires_grad_(True)
    if setting == "frozen":
        set_bn_mode(model, "frozen")
    if setting == "eval":
        model.eval()  # predict path: frozen statistics whatever the mode says
    if setting == "detached":
        # Both engines normalize with the statistics of the first call in the step.
        with shared_batch_statistics(model), running_statistics_fixed(model):
            (da, ga), (dt, gt) = both(model, x, t)
    else:
        (da, ga), (dt, gt) = both(model, x, t)
    assert set(dt) == set(DERIVATIVE_KEYS)
    for k in DERIVATIVE_KEYS:
        assert dt[k].shape == (64, 2)
        assert rel(dt[k], da[k]) <= 1e-12, k
    assert grad_rel(gt, ga) <= 1e-12
    if setting == "x_requires_grad":  # gradients reach the inputs too
        gxa = torch.autograd.grad(residual_loss(compute_derivatives(model, x, t)), x)[0]
        gxt = torch.autograd.grad(residual_loss(taylor_derivatives(model, x, t)), x)[0]
        assert rel(gxt, gxa) <= 1e-12


@pytest.mark.parametrize("needed", [("Ux",), ("Uxx",), ("Ut", "Uxx"), BURGERS, ("Utt",),
                                    ("Ux", "Utt"), ("Uxx", "Utt")])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_only_needed_keys(needed, norm):
    model = make("gelu", norm)
    set_bn_mode(model, "frozen")
    x, t = points(32)
    (da, ga), (dt, gt) = both(model, x, t, needed)
    assert set(dt) == set(needed) | {"U"}
    for k in dt:
        assert rel(dt[k], da[k]) <= 1e-12, k
    assert grad_rel(gt, ga) <= 1e-12


def test_only_u():
    model = make("sin")
    x, t = points(16)
    d = taylor_derivatives(model, x, t, ("U",))
    assert set(d) == {"U"}
    assert rel(d["U"], model(torch.cat([x, t], 1))) <= 1e-14


def test_channels_carried():
    """Burgers' U, Ux, Ut, Uxx carry no t-second channel; Uxx alone still needs Ux's."""
    assert channels_for(BURGERS) == (("x", "t"), ("x",))
    assert channels_for(("Uxx",)) == (("x",), ("x",))
    assert channels_for(("Ut", "Utt")) == (("t",), ("t",))
    assert channels_for(("U",)) == ((), ())
    with pytest.raises(ValueError, match="Uxt"):
        channels_for(("Uxt",))


# -- float32 --------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, norm", [("tanh", "none"), ("gelu", "batch"),
                                              ("silu", "none"), ("sin", "batch")])
def test_float32(activation, norm):
    model = make(activation, norm, dtype=torch.float32, depth=4, width=20)
    set_bn_mode(model, "frozen")
    x, t = points(256, dtype=torch.float32)
    (da, ga), (dt, gt) = both(model, x, t)
    for k in DERIVATIVE_KEYS:
        assert dt[k].dtype == torch.float32
        assert rel(dt[k], da[k]) <= 1e-5, k
    assert grad_rel(gt, ga) <= 1e-5


# -- batch normalization semantics ----------------------------------------------------------

def test_detached_training_step_updates_running_statistics_alike():
    """One detached training step per engine: the same running statistics (to rounding: the
    engines compute each layer's input with different but equivalent products), the same
    derivatives and gradients."""
    a = make("tanh", "batch", seed=3)
    b = copy.deepcopy(a)
    x, t = points(128)
    da = compute_derivatives(a, x, t)
    dt = taylor_derivatives(b, x, t)
    ga = torch.autograd.grad(residual_loss(da), list(a.parameters()))
    gt = torch.autograd.grad(residual_loss(dt), list(b.parameters()))
    for k in DERIVATIVE_KEYS:
        assert rel(dt[k], da[k]) <= 1e-12, k
    assert grad_rel(gt, ga) <= 1e-12
    for la, lb in zip(bn_layers(a), bn_layers(b)):
        assert int(la.num_batches_tracked) == int(lb.num_batches_tracked) == 1
        assert rel(lb.running_mean, la.running_mean) <= 1e-13
        assert rel(lb.running_var, la.running_var) <= 1e-13
        assert rel(lb.last_batch_stats[1], la.last_batch_stats[1]) <= 1e-13


def test_shared_statistics_within_a_step():
    """Inside shared_batch_statistics a second point set (boundary, initial) is normalized with
    the first set's statistics, by either engine, and running statistics move once."""
    model = make("silu", "batch", seed=4)
    x, t = points(96, seed=5)
    xb, tb = points(10, seed=6)
    ref = copy.deepcopy(model)
    with shared_batch_statistics(model):
        taylor_derivatives(model, x, t)
        db = taylor_derivatives(model, xb, tb)
    with shared_batch_statistics(ref):
        compute_derivatives(ref, x, t)
        dr = compute_derivatives(ref, xb, tb)
    for k in DERIVATIVE_KEYS:
        assert rel(db[k], dr[k]) <= 1e-12, k
    for la, lb in zip(bn_layers(model), bn_layers(ref)):
        assert int(la.num_batches_tracked) == int(lb.num_batches_tracked) == 1


def test_batch_mode_is_refused():
    model = make("gelu", "batch")
    set_bn_mode(model, "batch")
    reason = unsupported_reason(model)
    assert reason is not None and "batch" in reason and "\n" not in reason
    with pytest.raises(ValueError, match="batch"):
        taylor_derivatives(model, *points(8))
    model.eval()  # the predict path normalizes with stored statistics: per point again
    assert unsupported_reason(model) is None
    for mode in ("detached", "frozen"):
        set_bn_mode(model.train(), mode)
        assert unsupported_reason(model) is None


def test_other_networks_are_refused():
    assert "MLP" in unsupported_reason(nn.Sequential(nn.Linear(2, 3)))
    model = make("gelu")
    model.hidden[1][1] = nn.GELU(approximate="tanh")
    assert "activation" in unsupported_reason(model)
    model.hidden[1][1] = nn.ReLU()
    assert "activation" in unsupported_reason(model)


def test_bad_inputs():
    model = make()
    x, t = points(8)
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        taylor_derivatives(model, x, t[:4])
    with pytest.raises(ValueError, match="unknown"):
        taylor_derivatives(model, x, t, ("U", "Uxt"))


def test_no_grad_evaluation():
    model = make("tanh", "batch").eval()
    x, t = points(32)
    with torch.no_grad():
        d = taylor_derivatives(model, x, t)
    ref = compute_derivatives(model, x, t, create_graph=False)
    assert not d["Uxx"].requires_grad
    for k in DERIVATIVE_KEYS:
        assert rel(d[k], ref[k]) <= 1e-12, k


# -- compilation ----------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["none", "batch"])
def test_compile_fallback_when_compiler_is_missing(monkeypatch, caplog, norm):
    """torch.compile raising (no compiler, old torch): eager results, a recorded reason, one
    warning for the process, and no further attempts (a BN network has several functions)."""
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    model = make("tanh", norm)
    set_bn_mode(model, "frozen")
    x, t = points(32)
    eager = taylor_derivatives(model, x, t, BURGERS)
    with caplog.at_level(logging.WARNING, logger="pinn.taylor"):
        for _ in range(3):
            d = taylor_derivatives(model, x, t, BURGERS, compile=True)
    for k in BURGERS:
        assert torch.equal(d[k], eager[k]), k
    status = compile_status()
    assert "eager fallback" in status and "no C++ compiler found" in status
    events = compile_events()
    assert len(events) == 1 and not events[0]["ok"]
    assert len(caplog.records) == 1  # once, not per function or call
    assert "eager" in caplog.records[0].getMessage()


def test_compile_fallback_when_compiled_code_fails(monkeypatch):
    """A compiler that accepts the function but fails when it runs (code generation errors
    surface at the first call): the call is repeated eagerly and recorded."""
    def failing_at_call(fn, **kwargs):
        def run(*args):
            raise RuntimeError("C++ compile error")
        return run

    monkeypatch.setattr(torch, "compile", failing_at_call)
    model = make("gelu")
    x, t = points(32)
    (da, ga), (dt, gt) = both(model, x, t, compile=True)
    for k in DERIVATIVE_KEYS:
        assert rel(dt[k], da[k]) <= 1e-12, k
    assert grad_rel(gt, ga) <= 1e-12
    assert "C++ compile error" in compile_status()


@pytest.mark.parametrize("activation, norm", [("tanh", "none"), ("gelu", "batch")])
def test_compiled_functions_trace_as_one_graph(monkeypatch, activation, norm):
    """The compiled functions capture without graph breaks (fullgraph) and agree with eager;
    the 'eager' backend checks the tracing without paying for code generation."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real, backend="eager"))
    model = make(activation, norm)
    set_bn_mode(model, "frozen")
    x, t = points(32)
    (da, ga), (dt, gt) = both(model, x, t, compile=True)
    for k in DERIVATIVE_KEYS:
        assert rel(dt[k], da[k]) <= 1e-12, k
    assert grad_rel(gt, ga) <= 1e-12
    events = compile_events()
    assert events and all(e["ok"] for e in events), events
    assert compile_status().startswith("compiled")
    n = len(events)
    taylor_derivatives(model, x, t, compile=True)  # same shapes: nothing new to compile
    assert len(compile_events()) == n
    # A later run in the same process (a sweep's next job) reuses them and says so.
    assert compile_status(since=n) == "reused the graphs compiled earlier in this process"


def test_compile_status_before_any_compilation():
    assert compile_status() == "eager (nothing compiled)"
    assert taylor.compile_events() == []


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_inductor_compiled_agrees():
    """The generated code itself (inductor, C++), on the whole-network path: same numbers as
    eager to rounding. A few seconds of compilation; the benchmark covers the larger cases."""
    model = make("tanh", depth=2, width=8)
    x, t = points(32)
    (da, ga), (dt, gt) = both(model, x, t, BURGERS, compile=True)
    events = compile_events()
    if not all(e["ok"] for e in events):  # no working compiler here: the fallback is tested
        pytest.skip(f"torch.compile unavailable: {compile_status()}")
    for k in BURGERS:
        assert rel(dt[k], da[k]) <= 1e-12, k
    assert grad_rel(gt, ga) <= 1e-12
    assert len(events) == 2  # one forward and one backward graph for the whole network


# -- the allocator --------------------------------------------------------------------------

def test_allocator_tuned_once(monkeypatch):
    monkeypatch.setattr(allocator, "_allocator_status", None)
    status = taylor.tune_allocator()
    assert status and "\n" not in status
    assert taylor.tune_allocator() == status == taylor.allocator_status()


def test_allocator_left_alone_when_disabled(monkeypatch):
    monkeypatch.setattr(allocator, "_allocator_status", None)
    monkeypatch.setattr(allocator, "ALLOCATOR_TUNING", False)
    taylor_derivatives(make(), *points(8))
    assert taylor.allocator_status().startswith("unchanged")
