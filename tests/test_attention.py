"""Residual-based attention (loss.attention=rba|vrba): the update against its formula, the
loss it weighs, holding and redraws, checkpoints and the refusals."""
import math

import numpy as np
import pytest
import torch

from pinn.attention import ResidualAttention
from pinn.losses import loss_terms, weighted_total
from pinn.nn import build_model
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.residual_vector import blocks, normal_equations
from pinn.sampling import Sampler
from pinn.train import build_trainer
from tests.conftest import compose_cfg, run_cli
from tests.test_faults import final_parameters, stop_and_resume
from tests.test_problems_nd import batch_of

R = torch.tensor([0.0, 0.5, 2.0, -4.0, 1.0], dtype=torch.float64)


def test_rba_update_follows_its_formula_step_by_step():
    att = ResidualAttention("rba", gamma=0.9, eta=0.1, lambda0=0.2)
    lam = np.full(5, 0.2)
    for k, scale in enumerate([1.0, 3.0, 0.5]):
        r = R * scale
        got = att.multipliers(r.abs())
        lam = 0.9 * lam + 0.1 * np.abs(r.numpy()) / np.abs(r.numpy()).max()
        np.testing.assert_allclose(got.numpy(), lam, rtol=1e-15, atol=1e-17)
    assert att.updates == 3


def test_vrba_update_uses_the_exponential_potential_with_its_annealed_temperature():
    """q_i = exp(|r_i| / eps_k) with eps_k = max|r| / log(k + 2), normalised by its max."""
    att = ResidualAttention("vrba", gamma=0.5, eta=0.25, lambda0=0.0)
    lam = np.zeros(5)
    r = np.abs(R.numpy())
    for k in range(4):
        eps = r.max() / math.log(k + 2)
        q = np.exp(r / eps)
        lam = 0.5 * lam + 0.25 * q / q.max()
        np.testing.assert_allclose(att.multipliers(R.abs()).numpy(), lam, rtol=1e-14)


def test_held_multipliers_stay_and_new_points_start_at_the_fixed_point():
    att = ResidualAttention("rba", gamma=0.99, eta=0.05, lambda0=0.0)
    att.multipliers(R.abs())
    att.hold()
    before = att.lam.clone()
    assert torch.equal(att.multipliers(3 * R.abs()), before)
    att.new_points()
    fresh = att.multipliers(R.abs())
    torch.testing.assert_close(fresh, 5.0 * R.abs() / 4.0, rtol=1e-14, atol=0)  # eta/(1-gamma)
    # the fixed point: one more update with the same residuals changes nothing
    att.held = False
    torch.testing.assert_close(att.multipliers(R.abs()), fresh, rtol=1e-14, atol=1e-15)


def test_the_residual_term_is_the_mean_of_the_weighted_squares():
    cfg = compose_cfg(["pde=kovasznay", "model.depth=2", "model.width=6", "precision=float64"])
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde)
    batch = batch_of(pde, n=40)
    plain = loss_terms(model, pde, batch, engine="autograd")
    att = ResidualAttention("rba", gamma=0.0, eta=1.0, lambda0=0.0)  # lambda = |r| / max |r|
    weighted = loss_terms(model, pde, batch, engine="autograd", attention=att)
    lam = att.lam
    from pinn.fields import point_fields
    res = pde.residual_at(batch.interior, point_fields(model, batch.interior, pde.wanted), None)
    norms = res.detach().square().sum(dim=1).sqrt()
    torch.testing.assert_close(lam, norms / norms.max(), rtol=1e-14, atol=0)
    for e, name in enumerate(pde.equations):
        want = (lam * res[:, e]).square().mean()
        torch.testing.assert_close(weighted[f"res_{name}"], want, rtol=1e-13, atol=0)
    assert weighted["bc"] == plain["bc"]  # only the residual is weighted
    # Levenberg-Marquardt's residual vector carries the same multipliers
    w = {"res_momentum_x": 1.0, "res_momentum_y": 2.0, "res_continuity": 3.0, "bc": 1.0}
    _, _, RR = normal_equations(model, blocks(model, pde, batch, w, attention=lam))
    torch.testing.assert_close(RR, weighted_total(weighted, w).detach(), rtol=1e-13, atol=0)


ATT = ["pde=burgers", "precision=float64", "model.depth=2", "model.width=8", "trainer.steps=8",
       "trainer.qn_steps=8", "trainer.checkpoint_every=3", "trainer.eval_every=100",
       "trainer.progress=false", "sampler.n_interior=64", "sampler.n_initial=16",
       "sampler.n_boundary=16", "sampler.resample_every=5", "sampler.adaptive=rad",
       "sampler.rad_oversample=3", "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false",
       "loss.attention=vrba", "loss.attention_lambda0=0.1"]


@pytest.fixture(scope="module", params=[("ssbroyden", "weights"), ("lm", "weights"),
                                        ("ssbroyden", "sampling")])
def uninterrupted_attention(request, tmp_path_factory):
    qn, mode = request.param
    overrides = [*ATT, f"optim.qn={qn}", f"loss.attention_qn={mode}"]
    tr = build_trainer(compose_cfg(overrides), RunPaths(tmp_path_factory.mktemp("att")))
    assert tr.fit()["status"] == "completed"
    return overrides, final_parameters(tr), tr.events, tr.points.attention


def test_a_run_with_attention_logs_and_holds_its_multipliers(uninterrupted_attention):
    _, _, _, att = uninterrupted_attention
    assert att.held and att.lam.shape == (64,)
    # one per Adam step but step 5 (a redraw: the new points start at the fixed point); none
    # in the quasi-Newton stage
    assert att.updates == 7
    assert 0 < float(att.lam.min()) and float(att.lam.max()) <= att.bound * (1 + 1e-12)


def test_sampling_attention_draws_the_points_and_leaves_the_loss_unweighted(tmp_path):
    """loss.attention_qn=sampling: in the quasi-Newton stage each redraw counts one draw of
    attention (the temperature's k), the chosen points' multipliers are the fixed point
    bound * q / max q of the draw, and the loss is the plain one on the drawn points."""
    tr = build_trainer(compose_cfg([*ATT, "loss.attention_qn=sampling"]), RunPaths(tmp_path))
    assert tr.fit()["status"] == "completed"
    att, points = tr.points.attention, tr.points
    assert att.samples and att.draws == 2  # redraws at steps 10 and 15 (quasi-Newton from 8)
    assert points.loss_attention is None
    torch.testing.assert_close(att.lam, att.bound * points.sampler.last_weights, rtol=0, atol=0)
    plain = loss_terms(tr.model, tr.pde, points.batch, engine="autograd")
    got = points.terms(tr.step)
    torch.testing.assert_close(got["res"], plain["res"], rtol=1e-12, atol=0)


def test_draw_weights_follow_the_potential_at_the_draw_count():
    att = ResidualAttention("vrba", gamma=0.999, eta=0.01, lambda0=0.0, qn_mode="sampling")
    r = np.abs(R.numpy())
    for k in range(3):
        want = np.exp((r / r.max() - 1.0) * math.log(k + 2))
        np.testing.assert_allclose(att.draw_weights(R.abs()).numpy(), want, rtol=1e-14)
    assert att.draws == 3 and att.updates == 0
    rba = ResidualAttention("rba", gamma=0.9, eta=0.1, lambda0=0.0, qn_mode="sampling")
    np.testing.assert_allclose(rba.draw_weights(R.abs()).numpy(), r / r.max(), rtol=1e-15)


def test_a_draw_by_weights_keeps_only_weighted_candidates():
    """Candidates of weight zero are never drawn while enough others have weight (RAD's
    uniform share rad_c would draw them)."""
    from pinn.geometry import Domain
    from pinn.coords import Axes
    dom = Domain(Axes(("x",), True), [(0.0, 1.0), (0.0, 1.0)])
    sampler = Sampler("sobol", 50, 4, 4, dom, torch.float64, torch.Generator().manual_seed(1),
                      rad=(1.0, 1.0, 4))
    att = ResidualAttention("rba", gamma=0.9, eta=0.1, lambda0=0.0, qn_mode="sampling")
    residual = lambda p: (p[:, 0] - 0.5).clamp(min=0.0)  # zero on x <= 0.5
    batch = sampler.sample(residual, weigh=att.draw_weights)
    assert bool((batch.interior[:, 0] > 0.5).all())
    assert sampler.last_weights.shape == (50,) and bool((sampler.last_weights > 0).all())
    plain = sampler.sample(residual)  # RAD with rad_c = 1: some points on the zero side
    assert bool((plain.interior[:, 0] <= 0.5).any())


@pytest.mark.parametrize("stop_at", [4, 9, 11])  # in Adam, in the stage, after a redraw
def test_resume_with_attention_is_bitwise(stop_at, tmp_path, uninterrupted_attention):
    overrides, params, events, att = uninterrupted_attention
    resumed = stop_and_resume(overrides, tmp_path, stop_at)
    assert all(torch.equal(a, b) for a, b in zip(final_parameters(resumed), params))
    assert resumed.events == events
    assert torch.equal(resumed.points.attention.lam, att.lam)


@pytest.mark.parametrize("override, message", [
    ("loss.attention=rbaa", "loss.attention='rbaa' is not allowed: one of none, rba, vrba"),
    ("loss.attention_gamma=1", "loss.attention_gamma=1.0 is not allowed: a number in [0, 1)"),
    ("loss.attention_eta=0", "loss.attention_eta=0.0 is not allowed: a finite number > 0"),
    ("loss.attention_qn=both", "loss.attention_qn='both' is not allowed: one of sampling, weights"),
])
def test_bad_attention_settings_stop_in_one_line(tmp_path, override, message):
    p = run_cli([override, "trainer.steps=1", "trainer.qn_steps=0"], tmp_path)
    assert p.returncode == 2
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_attention_with_causal_weighting_is_refused(tmp_path):
    p = run_cli(["pde=heat", "loss.attention=rba", "loss.causal=true", "trainer.steps=1"],
                tmp_path)
    assert p.returncode == 2
    assert "loss.attention='rba' is not allowed: none with loss.causal=true" in p.stderr
