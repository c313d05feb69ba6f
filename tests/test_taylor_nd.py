"""taylor_partials on points of 1-4 dimensions against reverse-mode autograd
(pinn.derivatives_nd.nd_derivatives), the reference; its refusals; the (x, t) entry point as
its special case."""
import copy
import functools

import pytest
import torch
from torch import nn

from pinn.coords import Derivative
from pinn.derivatives import DERIVATIVE_KEYS
from pinn.derivatives_nd import nd_derivatives
from pinn.nn import MLP
from pinn.nn.embedding import Embedding, HardInitial
from pinn.nn.norm import bn_layers, calibrate_bn, set_bn_mode
from pinn.taylor import (compile_events, compile_status, reset_compiled, taylor_derivatives,
                         taylor_partials, taylor_unsupported)
from pinn.taylor.structure import KEY_ALPHA, plan
from tests.test_taylor import randomize

F64 = torch.float64
ACTIVATIONS = ("tanh", "gelu", "sin", "silu")


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def grad_rel(ga, gb):
    return rel(torch.cat([g.reshape(-1) for g in ga]), torch.cat([g.reshape(-1) for g in gb]))


def box(d):
    """Bounds of a d-dimensional domain, a different interval per axis."""
    lower = tuple(-1.0 + 0.5 * j for j in range(d))
    upper = tuple(1.0 + 0.75 * j for j in range(d))
    return lower, upper


def network(d, n_out=3, activation="tanh", norm="none", depth=3, width=10, embedding=None,
            transform=None, dtype=F64, seed=0):
    """A random MLP on ``box(d)``; biases and BN parameters and statistics random, so that
    every term is exercised."""
    torch.manual_seed(seed)
    lower, upper = box(d)
    model = MLP(n_out=n_out, depth=depth, width=width, activation=activation, norm=norm,
                lower=lower, upper=upper, embedding=embedding,
                output_transform=transform).to(dtype)
    return randomize(model)


def draw(d, n=40, dtype=F64, seed=1):
    g = torch.Generator().manual_seed(seed)
    lower, upper = (torch.tensor(b, dtype=F64) for b in box(d))
    return (lower + (upper - lower) * torch.rand(n, d, generator=g, dtype=F64)).to(dtype)


def pure(d, n_out, orders=(0, 1, 2)):
    """Every output's value and its pure partials of ``orders`` along every axis."""
    out = []
    for k in range(n_out):
        for order in orders:
            for j in range(d) if order else [0]:
                alpha = [0] * d
                alpha[j] = order
                out.append(Derivative(k, tuple(alpha)))
    return out


def loss_of(fields, wanted):
    """A mean-square loss that couples every field to the first output's value (when asked
    for), so that each field reaches every parameter through a product as in a residual."""
    value = Derivative(0, (0,) * len(wanted[0].alpha))
    u = fields[value] if value in fields else 1.0
    return sum((1 + 0.1 * i) * (fields[w] * (1 + 0.5 * u)).square().mean()
               for i, w in enumerate(wanted))


def both(model, points, wanted, ref_model=None, **kw):
    """(autograd, taylor): the fields and the parameter gradients of loss_of."""
    out = []
    for m, engine in ((ref_model or model, nd_derivatives),
                      (model, functools.partial(taylor_partials, **kw))):
        fields = engine(m, points, wanted)
        # A request without values does not reach the head's bias: a zero gradient.
        grads = torch.autograd.grad(loss_of(fields, wanted), list(m.parameters()),
                                    allow_unused=True, materialize_grads=True)
        out.append((fields, grads))
    return out


def check(pair, wanted, tol=1e-12):
    (fa, ga), (ft, gt) = pair
    assert list(ft) == list(dict.fromkeys(wanted))
    for w in wanted:
        assert ft[w].shape == fa[w].shape == (fa[w].shape[0],)
        assert rel(ft[w], fa[w]) <= tol, w
    assert grad_rel(gt, ga) <= tol


@pytest.fixture(autouse=True)
def _fresh_compile_state():
    reset_compiled()
    yield
    reset_compiled()


# -- agreement with autograd ----------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_values_first_and_pure_second_partials_agree_with_autograd(d, activation):
    """The whole network in one node (no BN): every field of three outputs and every parameter
    gradient to 1e-12 relative."""
    model = network(d, activation=activation)
    wanted = pure(d, 3)
    check(both(model, draw(d), wanted), wanted)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_frozen_batch_norm_in_train_mode(d):
    model = network(d, activation="gelu", norm="batch")
    set_bn_mode(model, "frozen")
    wanted = pure(d, 3)
    check(both(model, draw(d), wanted), wanted)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_detached_batch_norm_in_train_mode(d):
    """Each engine takes the batch statistics itself (its own copy of the network): the same
    fields and gradients, and the same running statistics afterwards, to rounding."""
    model = network(d, activation="silu", norm="batch", seed=3)
    reference = copy.deepcopy(model)
    wanted = pure(d, 2)
    check(both(model, draw(d, 64), wanted, ref_model=reference), wanted)
    same_running_statistics(model, reference)


def same_running_statistics(model, reference):
    """One update of the running statistics in each network, the same to rounding."""
    for a, b in zip(bn_layers(model), bn_layers(reference)):
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 1
        assert rel(a.running_mean, b.running_mean) <= 1e-13
        assert rel(a.running_var, b.running_var) <= 1e-13


def test_detached_equals_frozen_at_the_batch_statistics():
    """Frozen statistics calibrated on the batch itself are the batch statistics: detached and
    frozen give the same fields and gradients."""
    detached_equals_frozen(network(3, activation="tanh", norm="batch", seed=4), pure(3, 3))


def detached_equals_frozen(detached, wanted):
    """Calibrated exactly on the points, frozen gives detached's fields and gradients."""
    d = len(wanted[0].alpha)
    points = draw(d, 50)
    calibrate_bn(detached, points)
    frozen = copy.deepcopy(detached)
    set_bn_mode(frozen, "frozen")
    set_bn_mode(detached, "detached")
    out = []
    for m in (detached, frozen):
        fields = taylor_partials(m, points, wanted)
        out.append((fields, torch.autograd.grad(loss_of(fields, wanted), list(m.parameters()))))
    (fd, gd), (ff, gf) = out
    for w in wanted:
        assert rel(fd[w], ff[w]) <= 1e-13, w
    assert grad_rel(gd, gf) <= 1e-13


def test_points_that_need_gradients_take_the_block_path_and_get_theirs():
    d = 3
    model = network(d, activation="sin")
    points = draw(d).requires_grad_(True)
    wanted = pure(d, 2)
    check(both(model, points, wanted), wanted)
    ga = torch.autograd.grad(loss_of(nd_derivatives(model, points, wanted), wanted), points)[0]
    gt = torch.autograd.grad(loss_of(taylor_partials(model, points, wanted), wanted), points)[0]
    assert rel(gt, ga) <= 1e-12


def embedded(d, periodic_axes, norm, activation):
    """A random network behind Fourier features of every column and periodic harmonics along
    ``periodic_axes``; BN (``norm="batch"``) frozen."""
    g = torch.Generator().manual_seed(7)
    embedding = Embedding(periodic_harmonics=2, fourier_features=3, fourier_sigma=1.5,
                          generator=g, n_in=d, periodic_axes=periodic_axes)
    model = network(d, activation=activation, norm=norm, embedding=embedding)
    set_bn_mode(model, "frozen")
    return model


@pytest.mark.parametrize("d, periodic_axes, norm", [(1, (0,), "none"), (3, (0, 1), "none"),
                                                   (3, (1,), "batch"), (4, (0, 2), "none")])
def test_embedding_of_all_columns(d, periodic_axes, norm):
    """Fourier features of every column and periodic harmonics per axis."""
    model = embedded(d, periodic_axes, norm, "gelu")
    wanted = pure(d, 3)
    check(both(model, draw(d), wanted), wanted)


def test_hard_initial_condition_on_x_t():
    """The output transform on (x, t): the product rule applied to the network's channels."""
    transform = HardInitial(lambda x: torch.cat([torch.sin(3 * x), x * x], 1), None, -0.5, 1.75,
                            boundary=(-1.0, 1.0))
    model = network(2, n_out=2, activation="tanh", transform=transform)
    wanted = pure(2, 2)
    check(both(model, draw(2), wanted), wanted)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_the_x_t_entry_point_is_the_same_computation(norm):
    """taylor_derivatives is taylor_partials on two columns: bitwise the same fields."""
    model = network(2, activation="gelu", norm=norm)
    set_bn_mode(model, "frozen")
    points = draw(2)
    keys = ("U", "Ux", "Ut", "Uxx")
    d = taylor_derivatives(model, points[:, :1], points[:, 1:], keys)
    wanted = [Derivative(k, KEY_ALPHA[key]) for key in keys for k in range(3)]
    p = taylor_partials(model, points, wanted)
    for w in wanted:
        key = next(k for k, a in KEY_ALPHA.items() if a == w.alpha)
        assert torch.equal(p[w], d[key][:, w.output]), w


def test_a_loss_trains_with_backward():
    """A Poisson residual in 3-D (three pure second partials): loss.backward() fills the same
    .grad as the autograd loss."""
    d = 3
    model = network(d, n_out=1, activation="tanh")
    reference = copy.deepcopy(model)
    points = draw(d, 64)
    wanted = [Derivative(0, a) for a in ((2, 0, 0), (0, 2, 0), (0, 0, 2))]
    for m, engine in ((model, taylor_partials), (reference, nd_derivatives)):
        fields = engine(m, points, wanted)
        residual = sum(fields[w] for w in wanted) + torch.sin(points).prod(1)
        residual.square().mean().backward()
    # The head's bias does not reach a second partial: no gradient, or a zero one.
    grads = [[torch.zeros_like(p) if p.grad is None else p.grad for p in m.parameters()]
             for m in (model, reference)]
    assert grad_rel(*grads) <= 1e-12


# -- requests and channels -------------------------------------------------------------------

@pytest.mark.parametrize("d, wanted, idx, seconds", [
    # 3-D Poisson: values and the three second partials (their firsts are carried along)
    (3, [Derivative(0, (0, 0, 0)), Derivative(0, (2, 0, 0)), Derivative(0, (0, 2, 0)),
         Derivative(0, (0, 0, 2))], (0, 1, 2), (0, 1, 2)),
    # 2-D Navier-Stokes (x, y, t): every first partial, the space seconds of u and v
    (3, [Derivative(k, a) for k in range(3) for a in ((0, 0, 0), (1, 0, 0), (0, 1, 0),
                                                       (0, 0, 1))]
     + [Derivative(k, a) for k in range(2) for a in ((2, 0, 0), (0, 2, 0))],
     (0, 1, 2), (0, 1)),
    # u_xx and u_tt beside u_y: the columns with seconds go first to stay adjacent
    (3, [Derivative(0, (0, 1, 0)), Derivative(1, (2, 0, 0)), Derivative(2, (0, 0, 2))],
     (0, 2, 1), (0, 2)),
    # one second partial in four columns: one first and one second channel
    (4, [Derivative(1, (0, 0, 2, 0))], (2,), (2,)),
    # values only: no derivative channel
    (2, [Derivative(0, (0, 0)), Derivative(2, (0, 0))], (), ()),
])
def test_only_the_requested_channels_are_carried(d, wanted, idx, seconds):
    firsts = {j for w in wanted for j, k in enumerate(w.alpha) if k}
    twice = {j for w in wanted for j, k in enumerate(w.alpha) if k == 2}
    ch = plan(firsts, twice)
    assert (ch.idx, ch.second_idx) == (idx, seconds)
    model = network(d, activation="gelu")
    check(both(model, draw(d), wanted), wanted)


def test_float32():
    model = network(3, activation="tanh", norm="batch", dtype=torch.float32, width=16)
    set_bn_mode(model, "frozen")
    wanted = pure(3, 3)
    check(both(model, draw(3, 128, dtype=torch.float32), wanted), wanted, tol=1e-5)


# -- refusals -------------------------------------------------------------------------------

def _one_line(reason, *words):
    assert reason is not None and "\n" not in reason
    for w in words:
        assert w in reason, reason


def test_supported_requests_have_no_reason():
    assert taylor_unsupported(network(3, norm="batch"), pure(3, 3)) is None


@pytest.mark.parametrize("alpha, words", [
    ((2, 1, 0), ("mixed partial of order 3", "(2, 1, 0)", "pure ones up to order 4")),
    ((1, 1, 1), ("mixed partial of order 3",)),
    ((0, 0, 5), ("order 5", "up to order 4"))])
def test_mixed_partials_above_order_2_and_orders_above_4_are_declined(alpha, words):
    model = network(3)
    wanted = [Derivative(0, (0, 0, 0)), Derivative(1, alpha)]
    reason = taylor_unsupported(model, wanted)
    _one_line(reason, "output 1", *words)
    with pytest.raises(ValueError, match="taylor partials: output 1"):
        taylor_partials(model, draw(3), wanted)


def test_batch_norm_in_batch_mode_is_declined():
    model = network(3, norm="batch")
    set_bn_mode(model, "batch")
    _one_line(taylor_unsupported(model, pure(3, 1)), "batch mode")
    with pytest.raises(ValueError, match="batch mode"):
        taylor_partials(model, draw(3), pure(3, 1))
    model.eval()  # predict: stored statistics, per point again
    assert taylor_unsupported(model, pure(3, 1)) is None


def test_an_embedding_for_other_columns_is_declined():
    model = network(3)
    model.embedding = Embedding(periodic_harmonics=1)  # built for (x, t)
    _one_line(taylor_unsupported(model, pure(3, 1)), "embedding takes 2 input columns",
              "network 3")


def test_an_embedding_without_derivative_rows_is_declined():
    model = network(2)
    model.embedding = nn.Identity()
    _one_line(taylor_unsupported(model, pure(2, 1)), "Identity has no taylor_rows")


def test_the_output_transform_is_declined_off_x_t():
    transform = HardInitial(lambda x: x, None, 0.0, 1.0)
    model = network(3, transform=transform)
    _one_line(taylor_unsupported(model, pure(3, 1)), "output transform", "(x, t)",
              "3 input columns")
    with pytest.raises(ValueError, match="output transform"):
        taylor_partials(model, draw(3), pure(3, 1))


def test_other_networks_are_declined():
    _one_line(taylor_unsupported(nn.Sequential(nn.Linear(3, 2)), pure(3, 1)), "not a pinn.nn")
    model = network(3)
    model.hidden[1][1] = nn.ReLU()
    _one_line(taylor_unsupported(model, pure(3, 1)), "activation")


def test_bad_shapes_and_outputs_raise():
    model = network(3)
    with pytest.raises(ValueError, match=r"d = 3"):
        taylor_partials(model, draw(2), pure(2, 1))
    with pytest.raises(ValueError, match=r"d = 3"):
        taylor_partials(model, draw(3), [Derivative(0, (1, 0))])
    with pytest.raises(ValueError, match="output 3 is not one of the network's 3 outputs"):
        taylor_partials(model, draw(3), [Derivative(3, (0, 0, 0))])


# -- compilation ----------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["none", "batch"])
def test_compiled_functions_trace_as_one_graph_in_three_dimensions(monkeypatch, norm):
    """fullgraph capture of the whole-network and per-block functions for three input columns,
    with the 'eager' backend (tracing checked, no code generation)."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real, backend="eager"))
    model = network(3, activation="gelu", norm=norm)
    set_bn_mode(model, "frozen")
    wanted = pure(3, 3)
    check(both(model, draw(3), wanted, compile=True), wanted)
    events = compile_events()
    assert events and all(e["ok"] for e in events), events


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_inductor_compiled_agrees_in_three_dimensions():
    model = network(3, n_out=2, activation="tanh", depth=2, width=8)
    wanted = pure(3, 2)
    pair = both(model, draw(3, 32), wanted, compile=True)
    if not all(e["ok"] for e in compile_events()):
        pytest.skip(f"torch.compile unavailable: {compile_status()}")
    check(pair, wanted)
    assert len(compile_events()) == 2  # one forward and one backward graph


def test_keys_cover_the_x_t_vocabulary():
    assert set(KEY_ALPHA) == set(DERIVATIVE_KEYS)
