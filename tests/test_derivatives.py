"""Input derivatives against closed forms and finite differences (float64)."""
import math

import pytest
import torch

from pinn.derivatives import DERIVATIVE_KEYS, compute_derivatives
from pinn.nn import MLP

F64 = torch.float64


def rand(*shape, generator=None):
    return torch.rand(*shape, dtype=F64, generator=generator)


def closed_form_model(xt):
    """Two outputs with known derivatives: sin(2x) e^{-t/2} and x^3 t^2."""
    x, t = xt[:, :1], xt[:, 1:]
    return torch.cat([torch.sin(2 * x) * torch.exp(-t / 2), x**3 * t**2], dim=1)


def closed_form_derivatives(x, t):
    s, c, e = torch.sin(2 * x), torch.cos(2 * x), torch.exp(-t / 2)
    return {
        "U": torch.cat([s * e, x**3 * t**2], 1),
        "Ux": torch.cat([2 * c * e, 3 * x**2 * t**2], 1),
        "Ut": torch.cat([-s * e / 2, 2 * x**3 * t], 1),
        "Uxx": torch.cat([-4 * s * e, 6 * x * t**2], 1),
        "Utt": torch.cat([s * e / 4, 2 * x**3], 1),
    }


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_closed_form_all_keys():
    g = torch.Generator().manual_seed(1)
    x, t = rand(200, 1, generator=g) * 2 - 1, rand(200, 1, generator=g)
    d = compute_derivatives(closed_form_model, x, t)
    exact = closed_form_derivatives(x, t)
    for k in DERIVATIVE_KEYS:
        assert d[k].shape == (200, 2)
        assert rel(d[k], exact[k]) <= 1e-12, k


@pytest.mark.parametrize("act, f, f1, f2", [
    ("tanh", torch.tanh, lambda z: 1 - torch.tanh(z) ** 2,
     lambda z: -2 * torch.tanh(z) * (1 - torch.tanh(z) ** 2)),
    ("sin", torch.sin, torch.cos, lambda z: -torch.sin(z)),
])
def test_one_hidden_layer_closed_form(act, f, f1, f2):
    """u = w2 . f(W1 s + b1) + b2 with s the scaled input: derivatives by the chain rule."""
    torch.manual_seed(3)
    net = MLP(n_out=3, depth=1, width=7, activation=act, lower=(-1, 0), upper=(1, 2)).double()
    x, t = rand(50, 1) * 2 - 1, rand(50, 1) * 2
    d = compute_derivatives(net, x, t)
    W1, b1 = net.hidden[0][0].weight, net.hidden[0][0].bias  # (7, 2), (7,)
    W2, b2 = net.head.weight, net.head.bias  # (3, 7), (3,)
    sx, st = net.in_scale[0], net.in_scale[1]
    z = ((torch.cat([x, t], 1) - net.in_center) * net.in_scale) @ W1.T + b1  # (N, 7)
    ax, at = W1[:, 0] * sx, W1[:, 1] * st  # dz/dx, dz/dt, (7,)
    exact = {
        "U": f(z) @ W2.T + b2,
        "Ux": (f1(z) * ax) @ W2.T,
        "Ut": (f1(z) * at) @ W2.T,
        "Uxx": (f2(z) * ax**2) @ W2.T,
        "Utt": (f2(z) * at**2) @ W2.T,
    }
    for k in DERIVATIVE_KEYS:
        assert rel(d[k].detach(), exact[k].detach()) <= 1e-12, k


@pytest.mark.parametrize("act", ["tanh", "gelu", "sin", "silu"])
def test_deep_network_matches_finite_differences(act):
    torch.manual_seed(4)
    net = MLP(n_out=2, depth=3, width=16, activation=act).double()
    x, t = rand(40, 1) * 2 - 1, rand(40, 1)
    d = compute_derivatives(net, x, t)
    h = 1e-3
    f = lambda xx, tt: net(torch.cat([xx, tt], 1)).detach()  # noqa: E731
    # Fourth-order central differences: truncation error ~h^4.
    def d1(fp2, fp1, fm1, fm2):
        return (-fp2 + 8 * fp1 - 8 * fm1 + fm2) / (12 * h)

    def d2(fp2, fp1, f0, fm1, fm2):
        return (-fp2 + 16 * fp1 - 30 * f0 + 16 * fm1 - fm2) / (12 * h * h)

    for var in ("x", "t"):
        sh = lambda k: (x + k * h, t) if var == "x" else (x, t + k * h)  # noqa: E731
        vals = {k: f(*sh(k)) for k in (-2, -1, 0, 1, 2)}
        fd1 = d1(vals[2], vals[1], vals[-1], vals[-2])
        fd2 = d2(vals[2], vals[1], vals[0], vals[-1], vals[-2])
        assert rel(d[f"U{var}"].detach(), fd1) < 1e-9, var
        assert rel(d[f"U{var}{var}"].detach(), fd2) < 1e-6, var


def test_only_requested_derivatives_are_computed():
    x, t = rand(10, 1), rand(10, 1)
    d = compute_derivatives(closed_form_model, x, t, needed={"Ut", "Uxx"})
    assert set(d) == {"U", "Ut", "Uxx"}


def test_derivatives_of_a_linear_function_are_zero_not_an_error():
    lin = torch.nn.Linear(2, 1, dtype=F64)
    d = compute_derivatives(lin, rand(5, 1), rand(5, 1))
    assert torch.all(d["Uxx"] == 0) and torch.all(d["Utt"] == 0)
    assert torch.allclose(d["Ux"], lin.weight[0, 0].expand(5, 1))


def test_create_graph_lets_a_loss_train_through_derivatives():
    torch.manual_seed(5)
    net = MLP(n_out=1, depth=2, width=8).double()
    x, t = rand(30, 1), rand(30, 1)
    loss = compute_derivatives(net, x, t)["Uxx"].square().mean()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    # Uxx does not depend on the output bias; every other parameter gets a gradient.
    assert net.head.bias.grad is None
    assert all(p.grad is not None for n, p in net.named_parameters() if n != "head.bias")
    # The gradient with respect to a weight matches a finite difference of the loss.
    w = net.hidden[0][0].weight
    h = 1e-6
    with torch.no_grad():
        w[0, 0] += h
    lp = compute_derivatives(net, x, t)["Uxx"].square().mean().item()
    with torch.no_grad():
        w[0, 0] -= 2 * h
    lm = compute_derivatives(net, x, t)["Uxx"].square().mean().item()
    assert math.isclose(grads[0][0, 0].item(), (lp - lm) / (2 * h), rel_tol=1e-6)


def test_bad_shapes_and_keys_are_refused():
    with pytest.raises(ValueError, match="unknown derivative"):
        compute_derivatives(closed_form_model, rand(3, 1), rand(3, 1), {"Uxt"})
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        compute_derivatives(closed_form_model, rand(3), rand(3))
