"""The trainer in-process: BN schedules, divergence log, checkpoint round trip."""
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import pinn
import pinn.checkpoint
from pinn.nn import BatchNorm
from pinn.optim.stages import LBFGSStage
from pinn.paths import RunPaths
from pinn.train import build_trainer, run
from tests.conftest import compose_cfg

BN_SMALL = ["model.norm=batch", "model.depth=3", "model.width=16", "model.activation=gelu",
            "precision=float64", "trainer.progress=false", "sampler.n_interior=128",
            "sampler.n_initial=32", "sampler.n_boundary=32", "pde.eval_nx=33", "pde.eval_nt=17",
            "log.divergence_points=64", "trainer.log_every=1", "log.figures=false"]


def bn_running_stats(model):
    return [(m.running_mean.clone(), m.running_var.clone()) for m in model.modules()
            if isinstance(m, BatchNorm)]


def test_freeze_schedule_calibrates_then_keeps_statistics_fixed(tmp_path):
    cfg = compose_cfg([*BN_SMALL, "trainer.steps=12", "trainer.qn_steps=0", "bn.freeze_at=5", "log.divergence_every=4"])
    tr = build_trainer(cfg, RunPaths(tmp_path))
    for _ in range(5):
        tr.adam_step()
        tr.step += 1
    tr.freeze("bn.freeze_at")
    assert tr.bn_mode == "frozen"
    assert [e["event"] for e in tr.events if "engine" not in e["event"]] == [
        "calibrate (bn.freeze_at)", "freeze (bn.freeze_at)"]
    frozen = bn_running_stats(tr.model)
    params_before = [p.clone() for p in tr.model.parameters()]
    for _ in range(3):
        tr.adam_step()
    after = bn_running_stats(tr.model)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(frozen, after))
    assert any(not torch.equal(a, b) for a, b in zip(params_before, tr.model.parameters()))


def test_fit_with_bn_logs_divergence_and_round_trips(tmp_path):
    cfg = compose_cfg([*BN_SMALL, "pde=heat", "trainer.steps=8", "trainer.qn_steps=3",
                       "log.divergence_every=4"])
    metrics = run(cfg, RunPaths(tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["bn_mode"] == "frozen"  # the quasi-Newton stage always runs frozen
    assert any(e["event"] == "freeze (quasi-Newton stage)" and e["step"] == 8 for e in saved["events"])
    for key in ("divergence/U/rel_l2", "divergence/Uxx/rel_l2", "divergence/residual/rel_l2",
                "divergence/grad/cosine", "divergence/loss/rel", "divergence/bn/layer0/var_gap"):
        assert key in saved, key
    # Frozen at the end: forward and predict are one function.
    assert saved["divergence/U/rel_l2"] == 0.0 and saved["divergence/grad/cosine"] == pytest.approx(1)
    ea = EventAccumulator(str(tmp_path / "tensorboard"))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    assert "divergence/Uxx/rel_l2" in tags and "divergence/bn/layer2/mean_gap" in tags
    assert [e.step for e in ea.Scalars("divergence/U/rel_l2")] == [4, 8, 11]
    assert "custom_scalars__config__" in ea.Tags()["tensors"]
    # The reloaded run predicts exactly what the trained model predicted.
    model, cfg2 = pinn.load_run(tmp_path)
    assert [m.mode for m in model.modules() if isinstance(m, BatchNorm)] == ["frozen"] * 3
    tr = build_trainer(cfg, RunPaths(tmp_path / "other"))
    x = torch.linspace(-1, 1, 50, dtype=torch.float64)[:, None]
    xt = torch.cat([x, 0.3 * torch.ones_like(x)], 1)
    with torch.no_grad():
        y = model(xt)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    tr.model.load_state_dict(state)
    tr.model.eval()
    with torch.no_grad():
        assert torch.equal(tr.model(xt), y)
    assert metrics["error/l2_rel/u"] == saved["error/l2_rel/u"]


def test_detached_run_is_calibrated_at_the_end(tmp_path):
    """Predict mode after training equals the detached forward path on the interior set."""
    cfg = compose_cfg([*BN_SMALL, "pde=heat", "trainer.steps=6", "trainer.qn_steps=0", "log.divergence_every=3"])
    tr = build_trainer(cfg, RunPaths(tmp_path))
    metrics = tr.fit()
    assert metrics["bn_mode"] == "detached"
    assert metrics["events"][-1]["event"] == "calibrate (end of training)"
    # The loss is measured on the interior set the calibration used: identical paths.
    assert metrics["divergence/loss/rel"] < 1e-12
    assert metrics["divergence/grad/cosine"] == pytest.approx(1, abs=1e-12)


def test_coupled_mode_trains_only_when_allowed_and_the_log_shows_it(tmp_path):
    from pinn.validation import ConfigError, validate

    with pytest.raises(ConfigError, match="bn.mode='batch' is not allowed: with bn.mode=batch"):
        validate(compose_cfg([*BN_SMALL, "bn.mode=batch"]))
    cfg = compose_cfg([*BN_SMALL, "pde=heat", "bn.mode=batch", "bn.allow_coupled_derivatives=true",
                       "trainer.steps=4", "trainer.qn_steps=0", "log.divergence_every=2", "bn.calibrate_at_end=false"])
    validate(cfg)
    tr = build_trainer(cfg, RunPaths(tmp_path))
    for _ in range(2):
        tr.adam_step()
    d = tr.divergence()
    # Coupled second derivatives are zero, so they differ from the per-point ones by 100%.
    assert d["Uxx/rel_l2"] == pytest.approx(1.0, abs=1e-8)
    assert d["Utt/rel_l2"] == pytest.approx(1.0, abs=1e-8)


def test_fit_freezes_at_the_configured_step(tmp_path):
    cfg = compose_cfg([*BN_SMALL, "pde=heat", "trainer.steps=6", "trainer.qn_steps=0",
                       "bn.freeze_at=3", "log.divergence_every=2"])
    metrics = build_trainer(cfg, RunPaths(tmp_path)).fit()
    assert metrics["bn_mode"] == "frozen"
    bn_events = [e for e in metrics["events"] if "engine" not in e["event"]]
    assert bn_events == [{"step": 3, "event": "calibrate (bn.freeze_at)"},
                         {"step": 3, "event": "freeze (bn.freeze_at)"}]


def test_lbfgs_reuses_its_last_evaluation_without_changing_the_trajectory(tmp_path, monkeypatch):
    """Handing back the line search's last loss and gradient at the start of the next L-BFGS
    iteration gives bitwise the same parameters as recomputing them, with fewer evaluations;
    the BN statistics are calibrated (frozen) at the switch, so the network has BN here."""
    runs = {}
    for reuse in (True, False):
        cfg = compose_cfg([*BN_SMALL, "trainer.steps=5", "trainer.qn_steps=12", "optim.qn=lbfgs"])
        tr = build_trainer(cfg, RunPaths(tmp_path / str(reuse)))
        monkeypatch.setattr(LBFGSStage, "reuse_evaluations", reuse)
        calls = []
        loss = tr._loss
        tr._loss = lambda: calls.append(tr.stage) or loss()
        assert tr.fit()["status"] == "completed"
        runs[reuse] = ([p.detach().clone() for p in tr.model.parameters()],
                       calls.count("lbfgs"))
    (fast, n_fast), (slow, n_slow) = runs[True], runs[False]
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))
    assert n_fast <= n_slow - 11  # one saved evaluation per iteration after the first


SMALL_HEAT = ["pde=heat", "precision=float64", "model.depth=2", "model.width=16",
              "trainer.progress=false", "sampler.n_interior=400", "sampler.n_initial=50",
              "sampler.n_boundary=50", "pde.eval_nx=64", "pde.eval_nt=33", "log.figures=false"]


def test_time_budget_ends_training_early_and_still_evaluates(tmp_path):
    cfg = compose_cfg([*SMALL_HEAT, "trainer.steps=1000000", "trainer.qn_steps=0",
                       "trainer.max_minutes=0.003"])
    metrics = run(cfg, RunPaths(tmp_path))
    assert metrics["status"] == "completed" and 0 < metrics["steps"] < 1000000
    assert metrics["stopped_early"].startswith("time budget trainer.max_minutes=0.003 reached")
    assert 0.18 <= metrics["loop_time_s"] < 5
    assert "error/l2_rel/u" in metrics
    assert pinn.checkpoint.load_checkpoint(RunPaths(tmp_path).last_checkpoint).step == metrics["steps"]
    # The summary says what ran: the steps done of the steps asked, and why it stopped.
    from pinn.train import format_summary

    assert metrics["steps_asked"] == 1000000
    status = format_summary(metrics, RunPaths(tmp_path)).splitlines()[1].split(None, 1)
    assert status == ["status", f"completed, stopped early at step {metrics['steps']} of "
                                "1000000: time budget trainer.max_minutes=0.003 reached"]


@pytest.mark.parametrize("method", ["bfgs", "ssbfgs", "ssbroyden"])
def test_dense_stage_with_rad_trains_heat_far_beyond_adam(tmp_path, method):
    """200 Adam steps, then 200 dense quasi-Newton iterations with RAD redraws every 50: the
    error against the closed form falls by two orders of magnitude (SSBroyden's below 1e-3;
    measured: bfgs 2.0e-3, ssbroyden 5.4e-4, and lbfgs 8.9e-3), each iteration is logged with
    its line-search step, and the stage is listed among the events."""
    cfg = compose_cfg([*SMALL_HEAT, "trainer.steps=200", "trainer.qn_steps=200",
                       f"optim.qn={method}", "sampler.resample_every=50",
                       "sampler.adaptive=rad", "trainer.log_every=10", "trainer.eval_every=200"])
    metrics = run(cfg, RunPaths(tmp_path))
    ea = EventAccumulator(str(tmp_path / "tensorboard"))
    ea.Reload()
    errors = {e.step: e.value for e in ea.Scalars("error/l2_rel/u")}
    assert metrics["error/l2_rel/u"] < errors[200] / 100
    if method == "ssbroyden":
        assert metrics["error/l2_rel/u"] < 1e-3
    assert {"qn/step", "qn/evaluations"} <= set(ea.Tags()["scalars"])
    assert {"step": 200, "event": f"quasi-Newton stage: {method}"} in metrics["events"]
    assert metrics["qn_method"] == method


STALL = ["pde=heat", "model.depth=2", "model.width=8", "sampler.n_interior=64",
         "sampler.n_initial=16", "sampler.n_boundary=16", "trainer.steps=5",
         "trainer.qn_steps=200", "optim.qn=lbfgs", "trainer.stall_iterations=20",
         "log.tensorboard=false", "pde.eval_nx=16", "pde.eval_nt=8", "trainer.progress=false"]


def test_quasi_newton_stage_ends_when_the_loss_stops_falling(tmp_path):
    """stall_rtol=0.9 asks for a tenfold fall every 20 iterations, which L-BFGS does not keep
    up: the stage ends at a window's end with an event, and the run is still evaluated."""
    cfg = compose_cfg([*STALL, "trainer.stall_rtol=0.9", "sampler.resample_every=0",
                       "sampler.adaptive=none"])
    metrics = build_trainer(cfg, RunPaths(tmp_path)).fit()
    assert metrics["status"] == "completed" and metrics["steps"] < 205
    assert (metrics["steps"] - 5) % 20 == 0
    assert "no progress" in metrics["stopped_early"]
    assert "trainer.stall_iterations=20" in metrics["stopped_early"]
    assert "error/l2_rel/u" in metrics
    assert any("no progress" in e["event"] for e in metrics["events"])


def test_stall_window_restarts_at_every_redraw_and_can_be_turned_off(tmp_path):
    # Redraws every 15 steps: a 20-iteration window on the same points never completes.
    cfg = compose_cfg([*STALL, "trainer.stall_rtol=0.9", "sampler.resample_every=15"])
    assert build_trainer(cfg, RunPaths(tmp_path / "a")).fit()["steps"] == 205
    cfg = compose_cfg([*STALL, "trainer.stall_rtol=0.9", "trainer.stall_iterations=0",
                       "sampler.resample_every=0", "sampler.adaptive=none"])
    assert "stopped_early" not in build_trainer(cfg, RunPaths(tmp_path / "b")).fit()


# -- what a redraw or a BN calibration does to the quasi-Newton state ---------------------------
KEEP = ["pde=heat", "precision=float64", "model.depth=2", "model.width=10",
        "sampler.n_interior=96", "sampler.n_initial=24", "sampler.n_boundary=24",
        "sampler.resample_every=0", "trainer.steps=4", "trainer.qn_steps=6",
        "trainer.progress=false", "log.tensorboard=false", "pde.eval_nx=16", "pde.eval_nt=8"]


def _qn_trainer(tmp_path, extra):
    tr = build_trainer(compose_cfg([*KEEP, *extra]), RunPaths(tmp_path))
    assert tr.fit()["status"] == "completed"
    return tr


def test_a_redraw_keeps_the_dense_inverse_hessian(tmp_path):
    """H after a redraw is H before it (symmetrized: (H + H')/2, which moves it by rounding
    only); the loss and gradient of the old points are dropped, and the next iteration
    evaluates the new objective at the same parameters."""
    tr = _qn_trainer(tmp_path, ["optim.qn=ssbroyden"])
    opt = tr.qn.optimizer
    assert opt.updates_since_reset > 0
    H = opt._state["H"].clone()
    assert not torch.equal(H, torch.eye(H.shape[0], dtype=H.dtype))
    points = tr.batch.x_int.clone()
    tr.resample()
    assert not torch.equal(points, tr.batch.x_int)  # new points
    assert torch.equal(opt._state["H"], (H + H.T) / 2)
    assert (opt._state["H"] - H).abs().max() <= 1e-12 * H.abs().max()
    assert opt._state["f"] is None and opt._state["g"] is None
    assert opt.updates_since_reset > 0 and opt._state["resets"] == 0


def test_a_redraw_keeps_the_lbfgs_memory(tmp_path):
    tr = _qn_trainer(tmp_path, ["optim.qn=lbfgs"])
    state = tr.qn.optimizer.state[tr.qn.params[0]]
    dirs = [y.clone() for y in state["old_dirs"]]
    assert dirs
    tr.resample()
    state = tr.qn.optimizer.state[tr.qn.params[0]]
    assert len(state["old_dirs"]) == len(dirs)
    assert all(torch.equal(a, b) for a, b in zip(dirs, state["old_dirs"]))


@pytest.mark.parametrize("method", ["ssbroyden", "lbfgs"])
def test_a_bn_calibration_keeps_the_curvature_and_changes_the_objective(tmp_path, method):
    """A calibration changes the function (new population statistics) but not the
    parameters: the curvature estimate is kept bitwise, the cached evaluation is dropped."""
    tr = _qn_trainer(tmp_path, ["model.norm=batch", "model.activation=gelu",
                                f"optim.qn={method}"])
    if method == "ssbroyden":
        before = tr.qn.optimizer._state["H"].clone()
    else:
        state = tr.qn.optimizer.state[tr.qn.params[0]]
        before = [y.clone() for y in state["old_dirs"]]
    tr.calibrate("test")
    if method == "lbfgs":
        state = tr.qn.optimizer.state[tr.qn.params[0]]
        assert len(state["old_dirs"]) == len(before)
    if method == "ssbroyden":
        assert torch.equal(tr.qn.optimizer._state["H"], before)
        assert tr.qn.optimizer._state["f"] is None
    else:
        assert all(torch.equal(a, b) for a, b in zip(before, state["old_dirs"]))
        assert tr.qn._last is None and tr.qn._new_objective
