"""Input derivatives in any dimension (pinn.derivatives_nd), against closed forms and finite
differences, with and without batch normalization; float64 throughout."""
import copy
import itertools

import pytest
import torch

from pinn.coords import Axes, Derivative, parse_key
from pinn.derivatives import compute_derivatives
from pinn.derivatives_nd import derivatives_by_name, laplacian, laplacian_terms, nd_derivatives
from pinn.nn import MLP, calibrate_bn, set_bn_mode



@pytest.fixture(autouse=True)
def float64_default():
    """float64 by default in this module only (the default is process-wide: restore it)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def points(n, d, seed=0):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


# -- closed forms ---------------------------------------------------------------------------
# u = sin(a.p) exp(b.p) in d dimensions: every partial is known exactly, by the product rule
# on the two exponentials of the complex form: d^alpha u = Im(prod (i a + b)^alpha exp((i a + b).p)).

def plane_wave(a, b):
    a, b = torch.tensor(a), torch.tensor(b)

    def model(p):
        return (torch.sin(p @ a) * torch.exp(p @ b))[:, None]

    def exact(p, alpha):
        k = torch.complex(b, a)  # d/dp_j of exp(k.p) is k_j exp(k.p)
        factor = torch.prod(torch.stack([k[j] ** alpha[j] for j in range(len(alpha))]))
        return (factor * torch.exp(p.to(torch.complex128) @ k)).imag

    return model, exact


@pytest.mark.parametrize("axes", [["x"], ["x", "t"], ["x", "y"], ["x", "y", "t"],
                                  ["x", "y", "z"], ["x", "y", "z", "t"]])
def test_every_partial_up_to_order_four_equals_the_closed_form(axes):
    ax = Axes.parse(axes)
    d = ax.dim
    model, exact = plane_wave([1.3, -0.7, 0.9, 0.4][:d], [0.3, 0.5, -0.2, 0.6][:d])
    p = points(40, d)
    # Every multi-index of order <= 4 (all of them in up to 3 dimensions; in 4, those of
    # order <= 3 and the pure fourth-order ones).
    alphas = [a for a in itertools.product(range(5), repeat=d) if sum(a) <= 4]
    if d == 4:
        alphas = [a for a in alphas if sum(a) <= 3 or max(a) == 4]
    wanted = [Derivative(0, a) for a in alphas]
    got = nd_derivatives(model, p, wanted, create_graph=False)
    for w in wanted:
        ref = exact(p, w.alpha)
        err = (got[w] - ref).abs().max() / ref.abs().max()
        assert err <= 1e-13, (ax.letters(w.alpha), float(err))


def test_the_laplacian_and_names_as_residuals_write_them():
    ax = Axes.parse(["x", "y", "t"])
    model, exact = plane_wave([1.1, 0.8, 0.5], [0.2, -0.3, 0.1])
    p = points(30, 3)
    fields = nd_derivatives(model, p, laplacian_terms(0, ax) + [Derivative(0, (0, 0, 1))])
    lap = laplacian(fields, 0, ax)
    assert torch.allclose(lap, exact(p, (2, 0, 0)) + exact(p, (0, 2, 0)), rtol=1e-13, atol=0)
    named = derivatives_by_name(model, p, ["u_yx", "u_xy", "u_t"], ["u"], ax)
    assert torch.equal(named["u_yx"], named["u_xy"])
    assert torch.allclose(named["u_xy"], exact(p, (1, 1, 0)), rtol=1e-13, atol=1e-15)


def test_a_field_independent_of_an_axis_has_zero_partials():
    p = points(10, 2)
    got = nd_derivatives(lambda q: q[:, :1] ** 2, p, [Derivative(0, (0, 1)),
                                                      Derivative(0, (3, 0)),
                                                      Derivative(0, (1, 1))])
    assert all(torch.equal(v, torch.zeros(10)) for v in got.values())


# -- networks, against finite differences -------------------------------------------------

def network(d, norm="none", n_out=2, seed=0):
    torch.manual_seed(seed)
    net = MLP(n_out=n_out, depth=3, width=16, activation="tanh", norm=norm,
              lower=[-1.0] * d, upper=[1.0] * d).double()
    return net


def central(f, p, axis, h):
    """Fourth-order central difference of f (N,) along ``axis``: error O(h^4)."""
    e = torch.zeros_like(p)
    e[:, axis] = h
    return (-f(p + 2 * e) + 8 * f(p + e) - 8 * f(p - e) + f(p - 2 * e)) / (12 * h)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("norm", ["none", "frozen"])
def test_each_derivative_step_agrees_with_finite_differences(d, norm):
    """Each field is the finite-difference derivative of the field it comes from (u_x of u,
    u_xy of u_x, u_xxxx of u_xxx, ...): every step of every path, for networks with and
    without batch normalization (frozen statistics: a per-point function)."""
    net = network(d, "batch" if norm != "none" else "none")
    if norm == "frozen":
        calibrate_bn(net, points(200, d, seed=5))
        set_bn_mode(net, "frozen")
    letters = "xyz"[:d]
    ax = Axes.parse(list(letters))
    p = points(25, d, seed=1)
    keys = ["u", *(f"u_{a}" for a in letters), *(f"u_{a}{b}" for a in letters for b in letters),
            "u_xxx", "u_xxxx", "v_xx"]
    if d >= 2:
        keys += ["u_xxy", "u_xyy", "u_xxyy"]
    keys = list(dict.fromkeys(keys))
    got = derivatives_by_name(net, p, keys, ["u", "v"], ax, create_graph=False)

    def field(name):
        return lambda q: derivatives_by_name(net, q, [name], ["u", "v"], ax,
                                             create_graph=False)[name]

    h = 5e-4  # truncation ~ h^4 f^(5) / 30, rounding ~ 1e-16 f / h: both below 1e-7 here
    for key in keys:
        d_key = parse_key(key, ("u", "v"), ax)
        if d_key.order == 0:
            continue
        # Remove the last letter: the field this one differentiates.
        prev_alpha = list(d_key.alpha)
        axis = max(i for i, k in enumerate(prev_alpha) if k)
        prev_alpha[axis] -= 1
        prev = Derivative(d_key.output, tuple(prev_alpha))
        prev_name = ("u", "v")[prev.output] + ("_" + ax.letters(prev.alpha)
                                                if prev.order else "")
        fd = central(field(prev_name), p, axis, h)
        scale = max(float(fd.abs().max()), 1.0)
        assert (got[key] - fd).abs().max() <= 1e-7 * scale, key


@pytest.mark.parametrize("d", [2, 3])
def test_detached_statistics_give_the_derivatives_of_the_frozen_network_with_them(d):
    """In detached mode the batch statistics are constants of the differentiation: the
    derivatives equal those of the same network frozen at exactly those statistics."""
    net = network(d, "batch")
    p = points(64, d, seed=2)
    set_bn_mode(net, "detached")
    net.train()
    frozen = copy.deepcopy(net)
    calibrate_bn(frozen, p)
    set_bn_mode(frozen, "frozen")
    ax = Axes.parse(list("xyz"[:d]))
    keys = ["u", "u_x", "u_xy", "u_yy", "u_xxyy", "v_y"]
    a = derivatives_by_name(net, p, keys, ["u", "v"], ax, create_graph=False)
    b = derivatives_by_name(frozen, p, keys, ["u", "v"], ax, create_graph=False)
    for k in keys:
        assert (a[k] - b[k]).abs().max() <= 1e-12 * max(float(b[k].abs().max()), 1.0), k


def test_on_x_t_the_nd_engine_equals_the_1d_engine():
    """The 1-D API (compute_derivatives(model, x, t)) and the N-D one agree bitwise on (x, t)."""
    net = network(2)
    p = points(50, 2, seed=3)
    x, t = p[:, :1], p[:, 1:]
    old = compute_derivatives(net, x, t, ("U", "Ux", "Ut", "Uxx", "Utt"), create_graph=False)
    ax = Axes.parse(["x", "t"])
    new = derivatives_by_name(net, p, ["u", "u_x", "u_t", "u_xx", "u_tt", "v_xx"], ["u", "v"], ax,
                              create_graph=False)
    for old_key, new_key, col in [("U", "u", 0), ("Ux", "u_x", 0), ("Ut", "u_t", 0),
                                  ("Uxx", "u_xx", 0), ("Utt", "u_tt", 0), ("Uxx", "v_xx", 1)]:
        assert torch.allclose(old[old_key][:, col], new[new_key], rtol=1e-14, atol=1e-15), new_key


def test_parameter_gradients_flow_through_the_derivatives():
    """With create_graph (training), a loss of fourth and mixed derivatives has the parameter
    gradient that finite differences in one weight give."""
    net = network(2)
    p = points(20, 2, seed=4)
    ax = Axes.parse(["x", "y"])

    def loss():
        f = derivatives_by_name(net, p, ["u_xxxx", "u_xy", "v"], ["u", "v"], ax)
        return (f["u_xxxx"] ** 2).mean() + (f["u_xy"] * f["v"]).mean()

    w = net.hidden[0][0].weight
    (g,) = torch.autograd.grad(loss(), [w])
    h = 1e-6
    with torch.no_grad():
        w[0, 1] += h
    up = loss().item()
    with torch.no_grad():
        w[0, 1] -= 2 * h
    down = loss().item()
    with torch.no_grad():
        w[0, 1] += h
    fd = (up - down) / (2 * h)
    assert abs(g[0, 1].item() - fd) <= 1e-6 * max(abs(fd), 1.0)


def test_values_alone_keep_their_graph_for_training():
    """A request of values only (a data term) is still differentiable in the parameters."""
    net = network(2)
    (u,) = nd_derivatives(net, points(8, 2), [Derivative(0, (0, 0))]).values()
    assert u.requires_grad
    (v,) = nd_derivatives(net, points(8, 2), [Derivative(0, (0, 0))],
                          create_graph=False).values()
    assert not v.requires_grad


def test_the_x_t_taylor_entry_point_declines_networks_with_other_than_two_inputs():
    from pinn.taylor import unsupported_reason

    assert unsupported_reason(network(2)) is None
    assert "3 input columns" in unsupported_reason(network(3))  # taylor_partials takes those
