"""The trainer's parts (pinn/training/), each on its own: the state they keep, the stall
window, the rollback policies, the BN schedule, the logged rate."""
import math

import pytest
import torch

from pinn.paths import RunPaths
from pinn.train import build_trainer
from pinn.training import EventLog, Optimizers, RollbackGuard, RunClock
from tests.conftest import compose_cfg

TINY = ["pde=heat", "model.depth=2", "model.width=8", "sampler.n_interior=64",
        "sampler.n_initial=16", "sampler.n_boundary=16", "sampler.resample_every=3",
        "sampler.adaptive=rad", "loss.balance=grad_norm", "loss.causal=true",
        "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false", "log.tensorboard=false",
        "trainer.progress=false", "derivatives.compile=false"]

# The keys of a checkpoint's training state, as every version so far wrote them.
STATE_KEYS = {"model", "optimizer", "scheduler", "sampler", "qn", "batch", "step", "stage",
              "bn_mode", "events", "train_seconds", "compile_seconds", "loop_seconds",
              "stage_seconds", "resample_seconds", "divergence_seconds", "last_terms",
              "rollbacks", "lr_factor", "engine", "weights", "stall", "causal"}


def test_the_training_state_is_the_union_of_the_parts_state_dicts(tmp_path):
    tr = build_trainer(compose_cfg([*TINY, "trainer.steps=4", "trainer.qn_steps=3"]),
                       RunPaths(tmp_path))
    assert tr.fit()["status"] == "completed"
    parts = [tr.optimizers, tr.points, tr.bn, tr.event_log, tr.clock, tr.guard, tr.engine]
    keys = [set(p.state_dict()) for p in parts]
    assert sum(len(k) for k in keys) == len(set().union(*keys))  # no key held twice
    state = tr.training_state()
    assert set(state) == STATE_KEYS == set().union(*keys) | {"model", "step", "stage",
                                                             "last_terms"}
    assert state["stage"] == "ssbroyden" and state["qn"] is not None
    assert state["causal"]["held"] and state["step"] == 7


def stall_optimizers(n: int) -> Optimizers:
    cfg = compose_cfg(["optim.qn=lbfgs", f"trainer.stall_iterations={n}",
                       "trainer.stall_rtol=0.1"])
    opt = Optimizers(cfg, [torch.nn.Parameter(torch.ones(3, dtype=torch.float64))], EventLog())
    opt.start_qn(10)
    return opt


def test_the_stall_window_stops_when_the_loss_falls_too_little_and_restarts_at_a_redraw():
    opt = stall_optimizers(3)
    # The window opens at step 10 with loss 1; at step 12 (3 iterations) the loss has fallen
    # by half: go on, a new window from step 13; by step 15 only 5% more: stop.
    for step, loss in [(10, 1.0), (11, 0.8)]:
        assert opt._check_stall(step, loss) is None
    assert opt._check_stall(12, 0.5) is None and opt.stall == (13, 0.5)
    assert opt._check_stall(13, 0.49) is None
    opt.new_points(14)  # a redraw: the window starts again
    assert opt.stall is None
    assert opt._check_stall(14, 0.48) is None and opt._check_stall(15, 0.479) is None
    stop = opt._check_stall(16, 0.478)
    assert stop is not None and "no progress" in stop and "in 3 iterations" in stop
    assert opt.events.items[-1]["step"] == 17
    assert stall_optimizers(0)._check_stall(20, 1.0) is None  # 0: the check is off
    assert opt.state_dict()["stall"] == [17, 0.478]


class Scalars:
    def __init__(self):
        self.logged = []

    def scalars(self, values, step):
        self.logged.append((step, dict(values)))


@pytest.mark.parametrize("policy", ["rollback", "stop"])
def test_the_rollback_guard_rolls_back_up_to_its_limit_then_stops(policy):
    cfg = compose_cfg([f"trainer.on_nonfinite={policy}", "trainer.max_rollbacks=2",
                       "trainer.rollback_lr_factor=0.5", "trainer.debug_nan_at=3"])
    events, logger = EventLog(), Scalars()
    opt = Optimizers(cfg, [torch.nn.Parameter(torch.ones(2, dtype=torch.float64))], events)
    guard = RollbackGuard(cfg.trainer, opt, events, logger)
    guard.keep(lambda: {"w": torch.ones(2)})
    kept = guard.good_state()
    kept["w"] += 1  # a copy: the kept state is untouched
    assert torch.equal(guard.good_state()["w"], torch.ones(2))
    one = torch.tensor(1.0)
    assert guard.inject(2, one) == 1 and math.isnan(guard.inject(3, one))
    assert guard.inject(3, one) == 1  # once
    outcomes = [guard.recover(bad_step=5 + i, step=4) for i in range(3)]
    if policy == "stop":
        assert outcomes[0] == "trainer.on_nonfinite=stop" and guard.rollbacks == 0
        assert opt.lr_factor == 1.0 and not logger.logged
        return
    assert outcomes[:2] == [None, None]
    assert outcomes[2] == "2 rollbacks (trainer.max_rollbacks) used up"
    assert guard.rollbacks == 2 and opt.lr_factor == 0.25
    assert opt.adam.param_groups[0]["lr"] == pytest.approx(0.25e-3, rel=1e-15)
    assert [e["event"] for e in events.items][1].endswith("learning rate x0.25 (rollback 2 of 2)")
    assert logger.logged[-1] == (6, {"nonfinite/rollbacks": 2, "nonfinite/lr_factor": 0.25})
    bad = {"total": float("inf")}
    model = torch.nn.Linear(2, 1)
    assert not RollbackGuard.finite(bad, model) and RollbackGuard.finite({"total": 1.0}, model)
    with torch.no_grad():
        model.bias.fill_(float("nan"))
    assert not RollbackGuard.finite({"total": 1.0}, model)


def test_the_bn_schedule_freezes_once_at_its_step_and_at_the_quasi_newton_stage(tmp_path):
    cfg = compose_cfg([*TINY, "model.norm=batch", "model.activation=gelu", "bn.freeze_at=2",
                       "log.divergence_every=0"])
    bn = build_trainer(cfg, RunPaths(tmp_path)).bn
    assert [bn.freeze_reason(s, "adam") for s in (1, 2, 3)] == [None, "bn.freeze_at", None]
    assert bn.freeze_reason(7, "lbfgs") == "quasi-Newton stage"
    points = torch.rand(32, 2, dtype=torch.float64)
    assert bn.mode == "detached" and bn.calibrates_at_end()
    assert bn.freeze(points, 2, "bn.freeze_at") and bn.mode == "frozen"
    assert not bn.freeze(points, 3, "again")  # frozen already: nothing happens
    assert [e["event"] for e in bn.events.items] == ["calibrate (bn.freeze_at)",
                                                     "freeze (bn.freeze_at)"]
    assert not bn.calibrates_at_end() and bn.state_dict() == {"bn_mode": "frozen"}


def test_the_logged_rate_covers_one_window_of_one_stage():
    clock = RunClock(max_minutes=None)
    clock.open_window(0)
    clock.train_seconds = 2.0
    assert clock.window_rate(10) == 5.0  # 10 steps in 2 s
    clock.train_seconds = 3.0
    clock.open_window(12, restart=True)  # a new stage: the window starts at its first step
    clock.train_seconds = 4.0
    assert clock.window_rate(14) == 2.0
    clock.open_window(5)  # a rollback to an earlier step starts a window there
    clock.train_seconds = 6.0
    assert clock.window_rate(7) == 1.0
    assert clock.budget_left() is None and not clock.spent()
    budget = RunClock(max_minutes=0.5)
    budget.start_loop()
    budget.loop_seconds = 31.0
    assert budget.spent() and 0 < budget.budget_left() <= 30.0
    assert budget.budget_message() == "time budget trainer.max_minutes=0.5 reached"
