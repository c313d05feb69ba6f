"""taylor_partials for mixed second partials and pure partials of order 3 and 4 (the jets of
pinn.taylor.jets) against reverse-mode autograd (pinn.derivatives_nd.nd_derivatives), the
reference: fields and parameter gradients in 1-3 dimensions, with batch normalization and
embeddings, compiled; and what is still refused."""
import copy
import functools
import itertools

import pytest
import torch
from torch import nn

from pinn.coords import Derivative
from pinn.derivatives_nd import nd_derivatives
from pinn.fields import point_fields
from pinn.nn.embedding import Embedding, HardInitial
from pinn.nn.norm import set_bn_mode
from pinn.taylor import compile_events, compile_status, taylor_partials, taylor_unsupported
from pinn.taylor.jets import activation_derivatives, faa_di_bruno
from pinn.taylor.structure import JetPlan, jet_plan
from tests.test_taylor_nd import (ACTIVATIONS, F64, _fresh_compile_state, both, draw,  # noqa: F401
                                   detached_equals_frozen, embedded, grad_rel, loss_of, network, rel,
                                   same_running_statistics)
from tests.test_taylor_nd import check as check_nd

TOL = 1e-11  # relative, fields and parameter gradients (measured: about 1e-15)


def alpha(d, **orders):
    """The multi-index on d columns with ``orders`` {column: order}, e.g. alpha(3, c0=1, c2=1)."""
    a = [0] * d
    for key, k in orders.items():
        a[int(key[1:])] = k
    return tuple(a)


def higher(d, n_out=2, top=4):
    """Per output: the value, pure partials of orders 1..top along every axis and every mixed
    second partial."""
    out = []
    for k in range(n_out):
        out.append(Derivative(k, (0,) * d))
        for j in range(d):
            out += [Derivative(k, alpha(d, **{f"c{j}": o})) for o in range(1, top + 1)]
        for i, j in itertools.combinations(range(d), 2):
            out.append(Derivative(k, alpha(d, **{f"c{i}": 1, f"c{j}": 1})))
    return out


def kdv(d=2):
    """u, u_t, u_x, u_xxx (time last)."""
    return [Derivative(0, (0,) * d), Derivative(0, alpha(d, **{f"c{d - 1}": 1})),
            Derivative(0, alpha(d, c0=1)), Derivative(0, alpha(d, c0=3))]


def check(pair, wanted, tol=TOL):
    """Every field and the parameter gradient within ``tol`` of autograd's."""
    check_nd(pair, wanted, tol)


# -- the pieces ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind, module", [("tanh", nn.Tanh()), ("gelu", nn.GELU()),
                                          ("sin", torch.sin), ("silu", nn.SiLU())])
def test_activation_derivatives_up_to_order_4(kind, module):
    """Each closed form against autograd differentiating the activation four times."""
    z = torch.linspace(-4, 4, 81, dtype=F64).requires_grad_(True)
    expected = [module(z)]
    for _ in range(4):
        (g,) = torch.autograd.grad(expected[-1].sum(), z, create_graph=True)
        expected.append(g)
    got = activation_derivatives(kind, z.detach(), 4)
    for k, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-13, msg=f"order {k}")


def test_faa_di_bruno_on_a_closed_form():
    """exp(z(s)) with z a quartic: the four derivatives against autograd's."""
    s = torch.linspace(-1, 1, 21, dtype=F64).requires_grad_(True)
    c = torch.tensor([0.3, -0.7, 1.1, 0.4, -0.2], dtype=F64)
    paths = [sum(c[k] * s ** k for k in range(5))]  # z and its derivatives in s
    for _ in range(4):
        (g,) = torch.autograd.grad(paths[-1].sum(), s, create_graph=True)
        paths.append(g)
    expected = [torch.exp(paths[0])]
    for _ in range(4):
        (g,) = torch.autograd.grad(expected[-1].sum(), s, create_graph=True)
        expected.append(g)
    f = [torch.exp(paths[0]).detach()] * 5
    got = faa_di_bruno(f, [p.detach() for p in paths[1:]])
    for k, (a, b) in enumerate(zip(got, expected[1:]), 1):
        torch.testing.assert_close(a, b.detach(), rtol=1e-13, atol=1e-13, msg=f"order {k}")


@pytest.mark.parametrize("wanted, plan", [
    # KdV on (x, t): u_x, u_xx, u_xxx along x, u_t along t
    (kdv(), JetPlan((0, 1), (3, 1), ())),
    # u_xy alone: the first partials it needs and the mixed channel
    ([Derivative(0, (1, 1, 0))], JetPlan((0, 1), (1, 1), ((0, 1),))),
    # u_yyyy and u_xz of another output: columns in order, mixed pairs as positions
    ([Derivative(1, (0, 4, 0)), Derivative(0, (1, 0, 1))],
     JetPlan((0, 1, 2), (1, 4, 1), ((0, 2),))),
])
def test_only_the_requested_jets_are_carried(wanted, plan):
    assert jet_plan(wanted) == plan
    d = len(wanted[0].alpha)
    check(both(network(d, activation="tanh"), draw(d), wanted), wanted)


# -- agreement with autograd ----------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_higher_and_mixed_partials_agree_with_autograd(d, activation):
    """Every pure partial up to order 4 and every mixed second partial of two outputs, and the
    parameter gradient of a loss built on them."""
    wanted = higher(d)
    check(both(network(d, activation=activation), draw(d), wanted), wanted)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_frozen_batch_norm(d):
    model = network(d, activation="gelu", norm="batch")
    set_bn_mode(model, "frozen")
    wanted = higher(d)
    check(both(model, draw(d), wanted), wanted)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_detached_batch_norm_takes_the_statistics_as_model_does(d):
    """Each engine takes the batch statistics itself (its own copy of the network): the same
    fields and gradients, and the same running statistics afterwards."""
    model = network(d, activation="tanh", norm="batch", seed=3)
    reference = copy.deepcopy(model)
    wanted = higher(d, top=3)
    check(both(model, draw(d, 64), wanted, ref_model=reference), wanted)
    same_running_statistics(model, reference)


def test_detached_batch_norm_keeps_each_point_to_itself():
    """In detached mode a point's derivatives do not depend on the other points through the
    graph: the gradient of one point's u_xxx with respect to the others is zero."""
    model = network(2, n_out=1, activation="silu", norm="batch", seed=5)
    points = draw(2, 32).requires_grad_(True)
    w = Derivative(0, (3, 0))
    (g,) = torch.autograd.grad(taylor_partials(model, points, [w])[w][0], points)
    assert g[1:].abs().max() == 0 and g[0].abs().max() > 0


def test_exact_calibration_then_frozen_equals_detached_on_the_same_points():
    detached_equals_frozen(network(3, activation="sin", norm="batch", seed=4),
                           higher(3, n_out=1))


@pytest.mark.parametrize("d, periodic_axes, norm", [(1, (0,), "none"), (2, (0,), "batch"),
                                                   (3, (0, 1), "none"), (3, (2,), "batch")])
def test_fourier_features_and_periodic_embeddings(d, periodic_axes, norm):
    model = embedded(d, periodic_axes, norm, "tanh")
    wanted = higher(d)
    check(both(model, draw(d), wanted), wanted)


def test_the_embedding_keeps_its_jets_periodic():
    """With the periodic embedding on x every x-derivative up to order 4 takes the same value
    at the two ends of the period."""
    embedding = Embedding(periodic_harmonics=3, n_in=2, periodic_axes=(0,))
    model = network(2, n_out=1, activation="gelu", embedding=embedding)  # x in [-1, 1]
    t = torch.linspace(-0.5, 1.75, 7, dtype=F64)[:, None]
    ends = [torch.cat([torch.full_like(t, x), t], 1) for x in (-1.0, 1.0)]
    wanted = [Derivative(0, (k, 0)) for k in range(5)] + [Derivative(0, (1, 1))]
    left, right = (taylor_partials(model, p, wanted) for p in ends)
    for w in wanted:
        torch.testing.assert_close(left[w], right[w], rtol=1e-12, atol=1e-12)


def test_points_that_need_gradients_get_theirs():
    d = 2
    model = network(d, activation="gelu")
    points = draw(d).requires_grad_(True)
    wanted = higher(d, n_out=1)
    check(both(model, points, wanted), wanted)
    ga = torch.autograd.grad(loss_of(nd_derivatives(model, points, wanted), wanted), points)[0]
    gt = torch.autograd.grad(loss_of(taylor_partials(model, points, wanted), wanted), points)[0]
    assert rel(gt, ga) <= TOL


@pytest.mark.parametrize("name, top, coefficient", [("kdv", 3, 0.0025),
                                                    ("kuramoto_sivashinsky", 4, 100 / 16 ** 4)])
def test_a_residual_trains_with_backward(name, top, coefficient):
    """u_t + u u_x + c d^top u / dx^top (+ u_xx for Kuramoto-Sivashinsky) on (x, t):
    loss.backward() fills the same .grad as the autograd loss."""
    model = network(2, n_out=1, activation="tanh", depth=4, width=20)
    reference = copy.deepcopy(model)
    points = draw(2, 100)
    u, ut, ux, uxx, high = (Derivative(0, a) for a in ((0, 0), (0, 1), (1, 0), (2, 0), (top, 0)))
    for m, engine in ((model, taylor_partials), (reference, nd_derivatives)):
        f = engine(m, points, [u, ut, ux, uxx, high])
        residual = f[ut] + f[u] * f[ux] + coefficient * f[high]
        if top == 4:
            residual = residual + 100 / 16 ** 2 * f[uxx]
        residual.square().mean().backward()
    grads = [[torch.zeros_like(p) if p.grad is None else p.grad for p in m.parameters()]
             for m in (model, reference)]
    assert grad_rel(*grads) <= TOL


def test_point_fields_routes_the_taylor_engine_to_the_jets():
    model = network(2, n_out=1, activation="tanh")
    points = draw(2)
    wanted = kdv() + [Derivative(0, (1, 1))]
    got = point_fields(model, points, wanted, engine="taylor")
    ref = point_fields(model, points, wanted, engine="autograd")
    for w in wanted:
        assert got[w].shape == ref[w].shape == (points.shape[0], 1)
        assert rel(got[w], ref[w]) <= TOL, w
    frozen = point_fields(model, points, wanted, engine="taylor", create_graph=False)
    assert not any(v.requires_grad for v in frozen.values())


def test_float32():
    model = network(2, activation="tanh", dtype=torch.float32, width=16)
    wanted = higher(2, top=3)
    check(both(model, draw(2, 128, dtype=torch.float32), wanted), wanted, tol=1e-4)


# -- refusals ------------------------------------------------------------------------------

def test_batch_norm_in_batch_mode_is_refused():
    model = network(2, norm="batch")
    set_bn_mode(model, "batch")
    reason = taylor_unsupported(model, kdv())
    assert reason is not None and "batch mode" in reason and "\n" not in reason
    with pytest.raises(ValueError, match="BatchNorm in batch mode couples the points"):
        taylor_partials(model, draw(2), kdv())
    model.eval()  # predict: stored statistics, per point again
    assert taylor_unsupported(model, kdv()) is None


def test_the_output_transform_takes_no_jets():
    """The hard initial condition's product rule speaks U, Ux, Ut, Uxx, Utt: autograd takes
    mixed and higher partials of such a network."""
    model = network(2, transform=HardInitial(lambda x: torch.sin(x), None, 0.0, 1.0))
    reason = taylor_unsupported(model, kdv())
    assert "output transform" in reason and "(3, 0)" in reason
    with pytest.raises(ValueError, match="output transform"):
        taylor_partials(model, draw(2), kdv())
    assert taylor_unsupported(model, [Derivative(0, (2, 0)), Derivative(0, (0, 1))]) is None


def test_an_embedding_without_jets_is_refused_for_them():
    class RowsOnly(nn.Module):
        n_in = 2

        def taylor_rows(self, z, scale, firsts, seconds):  # pragma: no cover - not called
            raise AssertionError

    model = network(2)
    model.embedding = RowsOnly()
    reason = taylor_unsupported(model, kdv())
    assert "RowsOnly has no taylor_jets" in reason
    assert taylor_unsupported(model, [Derivative(0, (2, 0))]) is None


# -- compilation ----------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["none", "batch"])
def test_compiled_jets_trace_as_one_graph_per_block_and_direction(monkeypatch, norm):
    """fullgraph capture of the jets' forward and reverse maps with the 'eager' backend
    (tracing checked, no code generation); the same results as eager."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real, backend="eager"))
    model = network(3, activation="gelu", norm=norm, depth=2, width=8)
    set_bn_mode(model, "frozen")
    wanted = higher(3, n_out=1)
    check(both(model, draw(3), wanted, compile=True), wanted)
    events = compile_events()
    assert len(events) == 4 and all(e["ok"] for e in events), events
    assert events[0]["function"] == ("gelu input block, jets of orders 4+4+4 and 3 mixed, "
                                     "forward")
    eager = taylor_partials(model, draw(3), wanted)
    compiled = taylor_partials(model, draw(3), wanted, compile=True)
    for w in wanted:
        assert rel(compiled[w], eager[w]) <= 1e-14, w


@pytest.mark.parametrize("where", ["compile", "call"])
def test_compile_fallback(monkeypatch, caplog, where):
    """torch.compile raising, or compiled code failing at its first call: eager results and
    the reason recorded."""
    def broken(fn, **kwargs):
        if where == "compile":
            raise RuntimeError("no C++ compiler found")
        return lambda *args: (_ for _ in ()).throw(RuntimeError("C++ compile error"))

    monkeypatch.setattr(torch, "compile", broken)
    model = network(2, activation="tanh", norm="batch", depth=2, width=8)
    set_bn_mode(model, "frozen")
    wanted = kdv()
    check(both(model, draw(2), wanted, compile=True), wanted)
    status = compile_status()
    assert "eager fallback" in status
    assert ("no C++ compiler found" if where == "compile" else "C++ compile error") in status


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_inductor_compiled_jets_agree():
    model = network(2, n_out=1, activation="tanh", depth=2, width=8)
    wanted = kdv() + [Derivative(0, (4, 0)), Derivative(0, (1, 1))]
    pair = both(model, draw(2, 32), wanted, compile=True)
    if not all(e["ok"] for e in compile_events()):
        pytest.skip(f"torch.compile unavailable: {compile_status()}")
    check(pair, wanted)
    # forward and backward of the input block's map and of the hidden block's
    assert len(compile_events()) == 4
