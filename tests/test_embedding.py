"""Problem-shaped networks: periodic and Fourier-feature embeddings, the hard initial condition,
and causal weighting of the residual (pinn.nn.embedding, pinn.losses.CausalWeighting)."""
import math
import re

import numpy as np
import pytest
import torch

from pinn.derivatives import DERIVATIVE_KEYS, compute_derivatives
from pinn.causal import CausalWeighting
from pinn.losses import imposed_terms, loss_terms
from pinn.nn import build_model
from pinn.nn.embedding import Embedding, HardInitial, check_periodic_lift
from pinn.nn.norm import bn_layers
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.sampling import Sampler
from pinn.train import build_trainer
from tests.conftest import compose_cfg, run_cli
from tests.test_faults import EXACT, final_parameters, stop_and_resume

F64 = torch.float64


def domain_points(pde, n=40, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = pde.x_min + (pde.x_max - pde.x_min) * torch.rand(n, 1, generator=g, dtype=F64)
    t = pde.t_min + (pde.t_max - pde.t_min) * torch.rand(n, 1, generator=g, dtype=F64)
    return x, t


def model_for(overrides):
    cfg = compose_cfg(overrides)
    pde = build_pde(cfg.pde)
    return build_model(cfg, pde), pde, cfg


def test_embedding_rows_are_the_derivatives_of_its_features_by_finite_differences():
    torch.manual_seed(0)
    emb = Embedding(periodic_harmonics=2, fourier_features=3, fourier_sigma=2.0,
                    generator=torch.Generator().manual_seed(5))
    z = torch.rand(7, 2, dtype=F64) * 2 - 1
    scale = torch.tensor([0.7, 1.3], dtype=F64)  # dz/d(x, t)
    rows = emb.taylor_rows(z, scale, (0, 1), (0, 1))  # (F, 5, N)
    h = 1e-4
    for c, v in enumerate((0, 1)):
        dz = torch.zeros(2, dtype=F64)
        dz[v] = h * scale[v]
        f_plus, f0, f_minus = emb(z + dz).t(), emb(z).t(), emb(z - dz).t()
        first = (f_plus - f_minus) / (2 * h)
        second = (f_plus - 2 * f0 + f_minus) / h ** 2
        torch.testing.assert_close(rows[:, 1 + c], first, atol=1e-7, rtol=1e-7)
        torch.testing.assert_close(rows[:, 3 + c], second, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(rows[:, 0], emb(z).t(), atol=0, rtol=0)


def test_embedding_of_more_columns_is_periodic_along_each_periodic_axis():
    """Three columns, periodic along the first and the last: the features repeat over the
    normalized period (2) along those axes and not along the other; each periodic column is
    left out of the features, and its rows equal the finite differences of the features."""
    emb = Embedding(periodic_harmonics=2, fourier_features=4, fourier_sigma=2.0,
                    generator=torch.Generator().manual_seed(5), n_in=3, periodic_axes=(0, 2))
    assert emb.passthrough == (1,) and emb.freqs.shape == (2 * 2 + 4, 3)
    z = torch.rand(9, 3, generator=torch.Generator().manual_seed(1), dtype=F64) * 2 - 1
    for j, periodic in ((0, True), (1, False), (2, True)):
        shifted = z.clone()
        shifted[:, j] += 2
        assert torch.allclose(emb(shifted), emb(z), atol=1e-12) == periodic, j
    scale = torch.tensor([0.7, 1.3, 0.4], dtype=F64)
    rows = emb.taylor_rows(z, scale, (0, 1, 2), (2,))  # (F, 1 + 3 + 1, N)
    h = 1e-4
    for c, v in enumerate((0, 1, 2)):
        dz = torch.zeros(3, dtype=F64)
        dz[v] = h * scale[v]
        f_plus, f_minus = emb(z + dz).t(), emb(z - dz).t()
        torch.testing.assert_close(rows[:, 1 + c], (f_plus - f_minus) / (2 * h), atol=1e-7,
                                   rtol=1e-7)
    torch.testing.assert_close(rows[:, 4], (f_plus - 2 * emb(z).t() + f_minus) / h ** 2,
                               atol=2e-5, rtol=1e-5)


def test_embedding_on_x_t_is_the_one_built_before_more_columns():
    """The defaults (two columns, periodic in x) draw the same features as ever: checkpoints
    of earlier runs load into the same network."""
    emb = Embedding(periodic_harmonics=2, fourier_features=3, fourier_sigma=1.5,
                    generator=torch.Generator().manual_seed(5))
    B = torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=F64) * 1.5
    B[:, 0] = torch.round(B[:, 0] / math.pi) * math.pi
    expected = torch.cat([torch.tensor([[math.pi, 0.0], [2 * math.pi, 0.0]], dtype=F64), B])
    assert torch.equal(emb.freqs, expected) and emb.passthrough == (1,)
    assert Embedding(fourier_features=3).passthrough == (0, 1)


@pytest.mark.parametrize("problem", [
    ["pde=wave"],  # second order in time: u0 + t v0 + tau^2 N
    ["pde=advection", "model.periodic=true", "model.harmonics=3"],
    ["pde=wave", "model.hard_boundary=true"],  # u0 + t v0 + tau^2 B(x) N
])
@pytest.mark.parametrize("norm", ["none", "detached", "frozen"])
def test_taylor_engine_equals_autograd_through_embedding_and_hard_initial(problem, norm):
    overrides = [*problem, "model.fourier_features=6", "model.fourier_sigma=2",
                 "model.hard_initial=true", "model.depth=2", "model.width=10",
                 "model.activation=gelu"]
    if norm != "none":
        overrides += ["model.norm=batch", f"bn.mode={norm}"]
    model, pde, _ = model_for(overrides)
    with torch.no_grad():
        for bn in bn_layers(model):
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    x, t = domain_points(pde)
    a = compute_derivatives(model, x, t, DERIVATIVE_KEYS)
    b = compute_derivatives(model, x, t, DERIVATIVE_KEYS, engine="taylor")
    for k in DERIVATIVE_KEYS:
        torch.testing.assert_close(b[k], a[k], rtol=1e-12, atol=1e-12 * a[k].abs().max().item())
    params = list(model.parameters())
    ga = torch.autograd.grad(sum(v.square().sum() for v in a.values()), params)
    gb = torch.autograd.grad(sum(v.square().sum() for v in b.values()), params)
    for p, q in zip(ga, gb):
        torch.testing.assert_close(q, p, rtol=1e-11, atol=1e-11 * p.abs().max().item())


@pytest.mark.parametrize("engine", ["autograd", "taylor"])
def test_periodic_embedding_makes_u_and_all_derivatives_periodic(engine):
    # NLS: period 10 on [-5, 5], two outputs; harmonics and Fourier features together.
    model, pde, _ = model_for(["pde=nls", "model.periodic=true", "model.harmonics=2",
                               "model.fourier_features=4", "model.fourier_sigma=3"])
    t = torch.linspace(0, pde.t_max, 9, dtype=F64)[:, None]
    left = compute_derivatives(model, torch.full_like(t, pde.x_min), t, DERIVATIVE_KEYS,
                               engine=engine)
    right = compute_derivatives(model, torch.full_like(t, pde.x_max), t, DERIVATIVE_KEYS,
                                engine=engine)
    for k in DERIVATIVE_KEYS:
        scale = left[k].abs().max().item()
        assert scale > 1e-3, k  # not trivially periodic
        assert (left[k] - right[k]).abs().max().item() <= 1e-13 * scale, k
    # Without the embedding the same network is not periodic.
    plain, _, _ = model_for(["pde=nls"])
    u = plain(torch.tensor([[pde.x_min, 0.5], [pde.x_max, 0.5]], dtype=F64))
    assert (u[0] - u[1]).abs().max() > 1e-3


@pytest.mark.parametrize("problem", ["burgers", "wave", "klein_gordon"])
@pytest.mark.parametrize("engine", ["autograd", "taylor"])
def test_hard_initial_condition_holds_to_rounding(problem, engine):
    model, pde, _ = model_for([f"pde={problem}", "model.hard_initial=true"])
    x, _ = domain_points(pde)
    t0 = torch.full_like(x, pde.t_min)
    d = compute_derivatives(model, x, t0, ("U", "Ut"), engine=engine)
    u0 = pde.initial(x)
    assert (d["U"] - u0).abs().max().item() <= 1e-15 * (1 + u0.abs().max().item())
    v0 = pde.initial_velocity(x)
    if v0 is not None:  # second order in time: u_t(x, t_min) = v0 too
        assert (d["Ut"] - v0).abs().max().item() <= 1e-14
    # ... and the network still moves u away from u0 later on.
    d1 = compute_derivatives(model, x, torch.full_like(x, pde.t_max), ("U",), engine=engine)
    assert (d1["U"] - u0).abs().max() > 1e-3


@pytest.mark.parametrize("problem", [["pde=wave", "model.hard_initial=true"], ["pde=heat"],
                                     ["pde=burgers", "model.hard_initial=true"]])
@pytest.mark.parametrize("engine", ["autograd", "taylor"])
def test_hard_boundary_holds_to_rounding(problem, engine):
    """u = 0 at both ends at every time (and the initial condition with hard_initial), the
    boundary term left out, and the network still free inside."""
    model, pde, _ = model_for([*problem, "model.hard_boundary=true", "model.depth=2",
                               "model.width=10"])
    t = torch.linspace(pde.t_min, pde.t_max, 9, dtype=F64)[:, None]
    for end in (pde.x_min, pde.x_max):
        d = compute_derivatives(model, torch.full_like(t, end), t, ("U", "Ut", "Utt"),
                                engine=engine)
        assert d["U"].abs().max().item() <= 1e-15, (end, d["U"])
        assert d["Ut"].abs().max().item() <= 1e-14
    x, _ = domain_points(pde)
    inside = compute_derivatives(model, x, torch.full_like(x, pde.t_max), ("U",), engine=engine)
    assert inside["U"].abs().max() > 1e-3
    if "model.hard_initial=true" in problem:
        d0 = compute_derivatives(model, x, torch.full_like(x, pde.t_min), ("U",), engine=engine)
        u0 = pde.initial(x)
        assert (d0["U"] - u0).abs().max().item() <= 1e-15 * (1 + u0.abs().max().item())
    assert set(imposed_terms(model, pde)) == (
        {"ic", "bc"} if "model.hard_initial=true" in problem else {"bc"})


def test_hard_boundary_product_rule_matches_the_formula():
    # u = u0 + tau B(x) N on [-1, 2], t in [0, 4], u0 = sin(pi (x + 1) / 3): every derivative
    # against the product rule written out by hand, B = (x + 1)(2 - x) / 1.5^2.
    def u0(x):
        return torch.sin(torch.pi * (x + 1) / 3)

    tr = HardInitial(u0, None, t_min=0.0, t_max=4.0, boundary=(-1.0, 2.0))
    g = torch.Generator().manual_seed(1)
    x = -1 + 3 * torch.rand(6, 1, generator=g, dtype=F64)
    t = 4 * torch.rand(6, 1, generator=g, dtype=F64)
    d = {k: torch.randn(6, 1, generator=g, dtype=F64) for k in DERIVATIVE_KEYS}
    out = tr.apply_to_derivatives(x, t, d, DERIVATIVE_KEYS)
    tau, w = t / 4, torch.pi / 3
    B, Bx, Bxx = (x + 1) * (2 - x) / 2.25, (1 - 2 * x) / 2.25, torch.full_like(x, -2 / 2.25)
    N, Nx, Nxx, Nt = d["U"], d["Ux"], d["Uxx"], d["Ut"]
    torch.testing.assert_close(out["U"], u0(x) + tau * B * N)
    torch.testing.assert_close(out["Ux"], w * torch.cos(w * (x + 1)) + tau * (Bx * N + B * Nx))
    torch.testing.assert_close(out["Uxx"], -w * w * u0(x)
                               + tau * (Bxx * N + 2 * Bx * Nx + B * Nxx))
    torch.testing.assert_close(out["Ut"], B * N / 4 + tau * B * Nt)
    torch.testing.assert_close(out["Utt"], 2 * B * Nt / 4 + tau * B * d["Utt"])
    # the module's forward pass is the same function
    xt = torch.cat([x, t], 1)
    torch.testing.assert_close(tr(xt, N), out["U"])


@pytest.mark.parametrize("overrides, words", [
    (["pde=allen_cahn"], "has periodic boundary conditions"),
    (["pde=klein_gordon"], "pde.boundary.right of pde=klein_gordon is not 0"),
    (["pde=heat", "pde.initial=1 + x", "model.hard_initial=true"],
     "pde.initial is [0.0, 2.0] at x = -1, 1, not 0"),
])
def test_hard_boundary_is_refused_where_it_cannot_hold(overrides, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        model_for([*overrides, "model.hard_boundary=true"])


def test_hard_initial_product_rule_matches_the_lift_formula():
    # u = u0 + (t - t0) v0 + tau^2 N, tau = (t - t0) / T, T = 2, u0 = sin(3x), v0 = x^2:
    # every derivative against the product rule written out by hand.
    def u0(x):
        return torch.sin(3 * x)

    def v0(x):
        return x ** 2

    tr = HardInitial(u0, v0, t_min=0.5, t_max=2.5)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, generator=g, dtype=F64)
    t = 0.5 + 2 * torch.rand(6, 1, generator=g, dtype=F64)
    d = {k: torch.randn(6, 1, generator=g, dtype=F64) for k in DERIVATIVE_KEYS}
    out = tr.apply_to_derivatives(x, t, d, DERIVATIVE_KEYS)
    tau, s = (t - 0.5) / 2, t - 0.5
    torch.testing.assert_close(out["U"], torch.sin(3 * x) + s * x ** 2 + tau ** 2 * d["U"])
    torch.testing.assert_close(out["Ux"], 3 * torch.cos(3 * x) + 2 * s * x + tau ** 2 * d["Ux"])
    torch.testing.assert_close(out["Uxx"], -9 * torch.sin(3 * x) + 2 * s + tau ** 2 * d["Uxx"])
    torch.testing.assert_close(out["Ut"], x ** 2 + tau * d["U"] + tau ** 2 * d["Ut"])
    torch.testing.assert_close(out["Utt"], d["U"] / 2 + 2 * tau * d["Ut"] + tau ** 2 * d["Utt"])


def test_hard_initial_on_a_periodic_network_needs_a_periodic_initial_value():
    # Allen-Cahn's u0 = x^2 cos(pi x) has u0'(-1) = 2, u0'(1) = -2: refused in one line.
    with pytest.raises(ValueError, match=r"model.hard_initial=true with model.periodic=true.*u_x"):
        model_for(["pde=allen_cahn", "model.periodic=true", "model.hard_initial=true"])
    # advection's sin(x) on [0, 2 pi] is smoothly periodic: accepted.
    model, pde, _ = model_for(["pde=advection", "model.periodic=true", "model.hard_initial=true"])
    check_periodic_lift(model.output_transform, pde.x_min, pde.x_max)


def test_refusal_reaches_the_command_line_before_a_run_folder(tmp_path):
    p = run_cli(["pde=allen_cahn", "model.periodic=true", "model.hard_initial=true",
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model.hard_initial=true"), p.stderr
    assert not (tmp_path / "run").exists()


def test_imposed_terms_are_left_out_of_the_loss():
    cases = {("pde=advection", "model.periodic=true", "model.hard_initial=true"): {"res"},
             ("pde=allen_cahn", "model.periodic=true"): {"res", "ic"},
             ("pde=burgers", "model.periodic=true"): {"res", "ic", "bc"},  # not a periodic problem
             ("pde=burgers", "model.hard_initial=true"): {"res", "bc"}}
    for overrides, expected in cases.items():
        model, pde, cfg = model_for(list(overrides))
        batch = Sampler("sobol", 32, 8, 8, (pde.x_min, pde.x_max, pde.t_min, pde.t_max), F64,
                        torch.Generator().manual_seed(0)).sample()
        assert set(loss_terms(model, pde, batch)) == expected, overrides
        assert set(imposed_terms(model, pde)) == {"res", "ic", "bc"} - expected


def test_fourier_features_are_seeded_and_saved_with_the_network():
    a, _, _ = model_for(["pde=heat", "model.fourier_features=8", "seed=4"])
    b, _, _ = model_for(["pde=heat", "model.fourier_features=8", "seed=4"])
    c, _, _ = model_for(["pde=heat", "model.fourier_features=8", "seed=5"])
    assert torch.equal(a.embedding.freqs, b.embedding.freqs)
    assert not torch.equal(a.embedding.freqs, c.embedding.freqs)
    assert "embedding.freqs" in a.state_dict()
    assert a.hidden[0][0].weight.shape[1] == 2 + 16  # x^, t^ and cos, sin of 8 frequencies


def test_causal_weights_follow_their_formula():
    cw = CausalWeighting(eps=2.0, chunks=4, t_min=0.0, t_max=2.0)
    t = torch.tensor([0.1, 0.2, 0.6, 1.1, 1.2, 1.3, 1.9], dtype=F64)
    r2 = torch.tensor([1.0, 3.0, 0.5, 0.1, 0.2, 0.3, 4.0], dtype=F64, requires_grad=True)
    term = cw.residual_term(r2, t[:, None])
    L = np.array([2.0, 0.5, 0.2, 4.0])  # slices [0, .5), [.5, 1), [1, 1.5), [1.5, 2]
    w = np.exp(-2.0 * np.array([0.0, 2.0, 2.5, 2.7]))
    np.testing.assert_allclose(cw.last.numpy(), w, rtol=1e-15)
    np.testing.assert_allclose(term.item(), (w * L).mean(), rtol=1e-15)
    # The weights are constants: d term / d r2_j = w(slice j) / (M * count(slice j)).
    (grad,) = torch.autograd.grad(term, r2)
    counts = np.array([2, 1, 3, 1])
    slices = [0, 0, 1, 2, 2, 2, 3]
    np.testing.assert_allclose(grad.numpy(), [w[s] / (4 * counts[s]) for s in slices],
                               rtol=1e-15)
    # An empty slice counts as resolved (loss 0); with eps = 0 every weight is 1.
    flat = CausalWeighting(eps=0.0, chunks=8, t_min=0.0, t_max=2.0)
    flat.residual_term(r2.detach(), t[:, None])
    assert torch.equal(flat.last, torch.ones(8, dtype=F64))


def test_held_causal_weights_stay_until_released():
    cw = CausalWeighting(eps=1.0, chunks=2, t_min=0.0, t_max=1.0)
    t = torch.tensor([[0.2], [0.7]], dtype=F64)
    cw.hold()
    cw.residual_term(torch.tensor([1.0, 1.0], dtype=F64), t)
    w0 = cw.last.clone()
    cw.residual_term(torch.tensor([5.0, 1.0], dtype=F64), t)
    assert torch.equal(cw.last, w0)
    cw.release()
    cw.residual_term(torch.tensor([5.0, 1.0], dtype=F64), t)
    np.testing.assert_allclose(cw.last.numpy(), [1.0, math.exp(-5.0)])


CAUSAL = [*EXACT, "model.norm=none", "bn.freeze_at=null", "loss.causal=true",
          "loss.causal_chunks=4", "optim.qn=ssbroyden", "model.fourier_features=3",
          "sampler.adaptive=rad", "sampler.rad_oversample=2"]


def test_causal_weighted_run_logs_its_weights_and_resumes_bit_exactly(tmp_path):
    full = build_trainer(compose_cfg(CAUSAL), RunPaths(tmp_path / "full"))
    assert full.fit()["status"] == "completed"
    assert full.causal.held  # the quasi-Newton stage holds its weights
    assert 0 < float(full.causal.last.min()) <= 1
    for stop_at in (13, 16):  # in the quasi-Newton stage, before and after a redraw
        resumed = stop_and_resume(CAUSAL, tmp_path / f"stop{stop_at}", stop_at)
        assert all(torch.equal(a, b) for a, b in
                   zip(final_parameters(resumed), final_parameters(full)))


@pytest.mark.parametrize("override, key", [
    ("model.harmonics=0", "model.harmonics"),
    ("model.fourier_features=-1", "model.fourier_features"),
    ("model.fourier_sigma=0", "model.fourier_sigma"),
    ("loss.causal_chunks=0", "loss.causal_chunks"),
    ("loss.causal_eps=-1", "loss.causal_eps"),
])
def test_bad_values_are_one_line_errors(tmp_path, override, key):
    p = run_cli(["pde=heat", override, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], p.stderr
    assert not (tmp_path / "run").exists()


def test_causal_weights_of_a_system_come_from_its_summed_residuals():
    # Two equations, four slices of [0, 2): slice losses by hand, weights from their sum.
    t = torch.tensor([[0.1], [0.2], [0.7], [1.1], [1.6], [1.9]], dtype=torch.float64)
    r = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.5, 0.5], [2.0, 1.0], [0.0, 4.0], [1.0, 1.0]],
                     dtype=torch.float64)
    cw = CausalWeighting(eps=0.3, chunks=4, t_min=0.0, t_max=2.0)
    terms = cw.residual_terms(r, t)
    L = torch.tensor([[2.0, 0.5, 2.0, 0.5], [1.0, 0.5, 1.0, 2.5]], dtype=torch.float64)
    total = L.sum(0)
    w = torch.exp(-0.3 * (torch.cumsum(total, 0) - total))
    for e in range(2):
        assert float(terms[e]) == pytest.approx(float((w * L[e]).mean()), rel=1e-15)
    # One equation: the same as the single-term form.
    single = CausalWeighting(eps=0.3, chunks=4, t_min=0.0, t_max=2.0)
    assert float(single.residual_term(r[:, 0], t)) == pytest.approx(
        float(CausalWeighting(0.3, 4, 0.0, 2.0).residual_terms(r[:, :1], t)[0]), rel=1e-15)


def test_causal_weighting_of_a_system_sums_over_ranks():
    from pinn import distributed

    g = torch.Generator().manual_seed(0)
    t = torch.rand(40, 1, generator=g, dtype=torch.float64)
    r = torch.rand(40, 3, generator=g, dtype=torch.float64)
    whole = CausalWeighting(1.0, 5, 0.0, 1.0).residual_terms(r, t)
    parts = []
    for rank in range(2):
        a, b = distributed.shard_range(40, rank, 2)
        cw = CausalWeighting(1.0, 5, 0.0, 1.0)
        other = (slice(0, 20) if rank else slice(20, 40))
        # The other rank's sums, as all_sum would add them.
        cw.reduce = lambda v, o=other: v + torch.cat([
            torch.stack([CausalWeighting(1.0, 5, 0.0, 1.0).chunk_sums(r[o, e], t[o])[0]
                         for e in range(3)]).reshape(-1),
            CausalWeighting(1.0, 5, 0.0, 1.0).chunk_sums(r[o, 0], t[o])[1]])
        parts.append(cw.residual_terms(r[a:b], t[a:b]))
    for e in range(3):
        assert float(parts[0][e] + parts[1][e]) == pytest.approx(float(whole[e]), rel=1e-13)
