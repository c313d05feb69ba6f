"""Batch-normalization semantics: each test would fail if a mode meant something else."""
import pytest
import torch

from pinn.derivatives import DERIVATIVE_KEYS, compute_derivatives
from pinn.divergence import rel_l2
from pinn.nn import MLP, BatchNorm, calibrate_bn, set_bn_mode, shared_batch_statistics
from pinn.nn.norm import running_statistics_fixed

F64 = torch.float64


def bn_net(seed=0, mode="detached", momentum=0.1, n_out=2):
    torch.manual_seed(seed)
    return MLP(n_out=n_out, depth=3, width=24, activation="gelu", norm="batch",
               lower=(0, 0), upper=(6.3, 6.3), bn_mode=mode, bn_momentum=momentum).double()


def points(n, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 2, generator=g, dtype=F64) * 6.3
    return u[:, :1], u[:, 1:]


def randomize_stats(net, seed=1):
    """Non-trivial running statistics, as after some training."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=F64))
            m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=F64) + 0.5)
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g, dtype=F64))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g, dtype=F64))


def fd_derivatives(f, x, t, h=1e-3):
    """Fourth-order central differences of f(x, t) -> (N, n_out), each point on its own."""
    out = {"U": f(x, t)}
    for var in ("x", "t"):
        s = {k: f(x + k * h, t) if var == "x" else f(x, t + k * h) for k in (-2, -1, 1, 2)}
        out[f"U{var}"] = (-s[2] + 8 * s[1] - 8 * s[-1] + s[-2]) / (12 * h)
        out[f"U{var}{var}"] = (-s[2] + 16 * s[1] - 30 * out["U"] + 16 * s[-1] - s[-2]) / (12 * h * h)
    return out


def test_frozen_derivatives_match_per_point_finite_differences():
    net = bn_net(mode="frozen")
    randomize_stats(net)
    net.train()  # frozen mode computes with the running statistics in train() as well
    x, t = points(64, 0)
    d = compute_derivatives(net, x, t, create_graph=False)
    with torch.no_grad():
        fd = fd_derivatives(lambda a, b: net(torch.cat([a, b], 1)), x, t)
    for k in DERIVATIVE_KEYS:
        assert rel_l2(d[k], fd[k]) < (1e-9 if k in ("U", "Ux", "Ut") else 1e-6), k


def test_detached_derivatives_match_finite_differences_at_fixed_statistics():
    net = bn_net(mode="detached")
    randomize_stats(net)
    net.train()
    x, t = points(64, 0)
    with running_statistics_fixed(net), shared_batch_statistics(net):
        d = compute_derivatives(net, x, t, create_graph=False)
        # The first call fixed the batch statistics; the perturbed evaluations reuse them.
        with torch.no_grad():
            fd = fd_derivatives(lambda a, b: net(torch.cat([a, b], 1)), x, t)
    for k in DERIVATIVE_KEYS:
        assert rel_l2(d[k], fd[k]) < (1e-9 if k in ("U", "Ux", "Ut") else 1e-6), k


def test_batch_mode_second_derivatives_vanish_identically():
    """BN ignores a shift of the whole batch, so grad(Ux.sum(), x) is exactly zero."""
    net = bn_net(mode="batch")
    net.train()
    x, t = points(200, 0)
    with running_statistics_fixed(net):
        d = compute_derivatives(net, x, t, create_graph=False)
    set_bn_mode(net, "detached")
    with running_statistics_fixed(net):
        ref = compute_derivatives(net, x, t, create_graph=False)
    for k in ("Uxx", "Utt"):
        assert d[k].abs().max() < 1e-10 * ref[k].abs().max(), k
    assert rel_l2(d["U"], ref["U"]) < 1e-14  # same values: only the derivatives differ
    assert rel_l2(d["Ux"], ref["Ux"]) > 0.1  # and the first derivatives are far off


def _point_fields(net, x, t, fixed_stats=None):
    """Derivatives at the first 10 points when evaluated in the batch (x, t)."""
    with running_statistics_fixed(net):
        d = compute_derivatives(net, x, t, create_graph=False)
    return {k: v[:10] for k, v in d.items()}


@pytest.mark.parametrize("mode", ["batch", "detached", "frozen"])
def test_a_points_derivatives_and_the_other_points_of_its_batch(mode):
    net = bn_net(mode=mode)
    randomize_stats(net)
    net.train()
    x, t = points(100, 0)
    x2, t2 = x.clone(), t.clone()
    x2[10:], t2[10:] = points(90, 5)  # the other points change
    a, b = _point_fields(net, x, t), _point_fields(net, x2, t2)
    worst = max(rel_l2(a[k], b[k]) for k in DERIVATIVE_KEYS)
    if mode == "frozen":
        assert worst == 0.0
    else:  # the batch statistics move with the other points
        assert worst > 1e-3
    if mode == "detached":
        # ... and with the statistics held fixed, the point is on its own again.
        with running_statistics_fixed(net), shared_batch_statistics(net):
            net(torch.cat([x, t], 1))  # fixes the statistics
            a = compute_derivatives(net, x[:10], t[:10], create_graph=False)
            b = compute_derivatives(net, x2[:10], t2[:10], create_graph=False)
        assert all(torch.equal(a[k], b[k]) for k in DERIVATIVE_KEYS)


@pytest.mark.parametrize("n_out", [1, 4])
def test_calibration_makes_frozen_equal_detached_on_the_set(n_out):
    net = bn_net(mode="detached", n_out=n_out)
    x, t = points(500, 0)
    calibrate_bn(net, x, t)
    assert all(int(m.calibrated) == 1 for m in net.modules() if isinstance(m, BatchNorm))
    net.train()
    with running_statistics_fixed(net):
        det = compute_derivatives(net, x, t, create_graph=False)
    set_bn_mode(net, "frozen")
    fro = compute_derivatives(net, x, t, create_graph=False)
    for k in DERIVATIVE_KEYS:
        assert rel_l2(det[k], fro[k]) <= 1e-12, k
    # Without calibration (one pass, momentum 0.1) the two are far apart.
    other = bn_net(mode="detached", n_out=n_out)
    with torch.no_grad():
        other(torch.cat([x, t], 1))
    with running_statistics_fixed(other):
        det = compute_derivatives(other, x, t, create_graph=False)
    other.eval()
    assert rel_l2(det["U"], compute_derivatives(other, x, t, create_graph=False)["U"]) > 0.1


def test_running_variance_is_the_biased_one_and_cumulative_average_is_exact():
    net = bn_net(mode="detached", momentum=None)
    x, t = points(300, 0)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.cat([x, t], 1))
        h = net.hidden[0][0](((torch.cat([x, t], 1) - net.in_center) * net.in_scale))
    bn0 = net.hidden[0][1]
    assert torch.allclose(bn0.running_var, h.var(0, unbiased=False), rtol=1e-13)
    assert torch.allclose(bn0.running_mean, h.mean(0), rtol=1e-13, atol=1e-15)
    # So predict equals forward on that batch, unlike torch.nn.BatchNorm1d (unbiased storage).
    with running_statistics_fixed(net), torch.no_grad():
        fwd = net(torch.cat([x, t], 1))
        net.eval()
        assert rel_l2(net(torch.cat([x, t], 1)), fwd) < 1e-13


def test_frozen_statistics_do_not_change_and_affine_weights_train():
    net = bn_net(mode="frozen")
    randomize_stats(net)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    x, t = points(50, 0)
    loss = compute_derivatives(net, x, t)["Uxx"].square().mean()
    loss.backward()
    bn0 = net.hidden[0][1]
    assert bn0.weight.grad is not None and bn0.weight.grad.abs().sum() > 0
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_torch_func_jvp_and_vmap_through_frozen():
    from torch.func import jacrev, jvp, vmap

    net = bn_net(mode="frozen")
    randomize_stats(net)
    x, t = points(32, 0)
    xt = torch.cat([x, t], 1)
    d = compute_derivatives(net, x, t, create_graph=False)
    _, ux = jvp(net, (xt,), (torch.cat([torch.ones_like(x), torch.zeros_like(t)], 1),))
    assert rel_l2(ux, d["Ux"]) < 1e-13
    per_point = vmap(lambda p: net(p[None])[0])(xt)
    assert rel_l2(per_point, d["U"]) < 1e-14
    jac = vmap(jacrev(lambda p: net(p[None])[0]))(xt)  # (N, n_out, 2)
    assert rel_l2(jac[:, :, 1], d["Ut"]) < 1e-13


def test_bad_mode_is_refused():
    net = bn_net()
    with pytest.raises(ValueError, match="bn.mode='train' is not allowed: one of batch, detached, frozen"):
        set_bn_mode(net, "train")
