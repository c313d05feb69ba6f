"""Host reads in the training step: on a GPU every read of a device value (``.item()``,
``bool()``, ``float()``, ``.tolist()``, ``.cpu()``, a data-dependent shape, ...) waits for the
device to finish what is queued. The loop reads only at its boundaries (logging, evaluation,
checkpoint, redraw, the quasi-Newton stage, the end); between them an Adam step queues without
waiting. These tests count the reads on the CPU, where every read site is visible, by patching
torch's reading methods, and hold them to the logging cadence."""
import collections
import contextlib
import math

import pytest
import torch

from pinn.data import synthesize, write_table
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.train import build_trainer
from tests.conftest import compose_cfg

# Every way a device value reaches the host, or a shape is decided by the data.
READERS = {torch.Tensor: ("item", "__bool__", "__float__", "__int__", "__index__", "tolist",
                          "numpy", "cpu", "__format__"),
           torch: ("equal", "allclose", "nonzero", "bincount", "unique", "masked_select",
                   "repeat_interleave")}

QUIET = ["trainer.progress=false", "log.figures=false", "log.tensorboard=false",
         "trainer.log_every=10", "trainer.eval_every=1000", "trainer.checkpoint_every=1000",
         "sampler.resample_every=1000", "sampler.n_interior=256", "sampler.n_initial=64",
         "sampler.n_boundary=64"]


@contextlib.contextmanager
def counting_reads(skip=()):
    """Count the reads per loop step: yields ``(counts, set_step)``; ``counts[step]`` is a
    Counter of the methods called while ``set_step(step)`` was last called. Reads of the
    tensors in ``skip`` (compared by identity) are not counted."""
    counts = collections.defaultdict(collections.Counter)
    now = [None]
    skipped = {id(t) for t in skip}
    originals = []

    def wrap(owner, name):
        original = getattr(owner, name)

        def reader(*args, **kwargs):
            if now[0] is not None and not (args and id(args[0]) in skipped):
                counts[now[0]][name] += 1
            return original(*args, **kwargs)
        originals.append((owner, name, original))
        setattr(owner, name, reader)

    for owner, names in READERS.items():
        for name in names:
            wrap(owner, name)
    try:
        yield counts, lambda step: now.__setitem__(0, step)
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def adam_step_counters(trainer):
    """Adam's per-parameter step counts: host tensors on every device (torch keeps them on the
    CPU unless ``capturable``), so reading them waits for nothing."""
    return [s["step"] for s in trainer.optimizers.adam.state.values() if "step" in s]


def reads_per_step(tmp_path, overrides, steps=20, warm=3):
    cfg = compose_cfg([*QUIET, "trainer.steps=100", "trainer.qn_steps=0", *overrides])
    trainer = build_trainer(cfg, RunPaths(tmp_path))
    trainer.clock.start()
    trainer.save()  # as fit() does: the state a rollback returns to
    trainer.clock.start_loop()
    for _ in range(warm):  # Adam's state exists from the first step on
        assert trainer._iteration() is None
    with counting_reads(skip=adam_step_counters(trainer)) as (counts, at):
        for _ in range(steps):
            at(trainer.step + 1)  # the step as the loop counts it once done
            assert trainer._iteration() is None
    return counts, trainer


@pytest.mark.parametrize("overrides", [
    [],  # Burgers, the default run's shape
    ["loss.causal=true"],
    ["model.norm=batch", "bn.mode=batch", "bn.momentum=null", "model.activation=gelu",
     "log.divergence_every=0"],
    ["pde=kovasznay"],  # a system in 2-D
    "inverse",  # a learned coefficient of the heat equation from observations
], ids=["burgers", "causal", "bn-cumulative", "kovasznay", "inverse"])
def test_adam_steps_read_the_device_only_at_logging_steps(tmp_path, overrides):
    if overrides == "inverse":
        path = tmp_path / "heat.npz"
        write_table(path, synthesize(build_pde(compose_cfg(["pde=heat"]).pde), 200, 0.0,
                                     seed=0, nx=41, nt=21))
        overrides = ["pde=heat", "+pde.unknown.kappa={init: 0.3, transform: log}",
                     f"data.file={path}"]
    counts, trainer = reads_per_step(tmp_path, overrides)
    assert trainer.step == 23
    quiet = {step: dict(c) for step, c in counts.items() if step % 10 != 0}
    assert quiet == {}, f"host reads between logging steps: {quiet}"
    # At a logging step: the guard's flag and the logged values (terms, point statistics).
    for step in (10, 20):
        assert 1 <= sum(counts[step].values()) <= 4, dict(counts[step])


def test_the_guard_reads_once_per_boundary_and_finds_the_first_bad_step(tmp_path):
    counts, trainer = reads_per_step(tmp_path, ["trainer.debug_nan_at=14"], steps=10, warm=10)
    # Step index 14 poisons the loss; the guard finds it at the next boundary (the 20th step)
    # and rolls back to the last kept state, step 0 (the run's start).
    assert trainer.step == 0 and trainer.guard.rollbacks == 1
    events = [e for e in trainer.events if "non-finite" in e["event"]]
    assert len(events) == 1 and events[0]["step"] == 14, events
    assert "rolled back to step 0" in events[0]["event"]
    assert sum(sum(c.values()) for s, c in counts.items() if s != 20) == 0  # 11..19: no read


def test_the_guard_tracks_without_reading_and_settles_in_one_read():
    from pinn.training.rollback import RollbackGuard
    cfg = compose_cfg([])
    guard = RollbackGuard(cfg.trainer, optimizers=None, events=None, logger=None)
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    with counting_reads() as (counts, at):
        at(1)
        guard.track(4, {"total": torch.tensor(1.0)}, [w])
        guard.track(5, {"total": torch.tensor(math.inf)}, [w])
        with torch.no_grad():
            w[1] = math.nan
        guard.track(6, {"total": torch.tensor(1.0)}, [w])
        assert dict(counts) == {}
        at(2)
        assert guard.settle() == 5  # the first of the two bad steps
        assert sum(counts[2].values()) == 1
        at(3)
        assert guard.settle() is None and dict(counts[3]) == {}  # nothing tracked since
    guard.track(7, {"total": 1.0}, [torch.zeros(2)])
    guard.track(8, {"total": math.nan}, [torch.zeros(2)])  # a host number (quasi-Newton)
    assert guard.settle() == 8 and guard.settle() is None


def test_a_dense_quasi_newton_iteration_reads_once_per_evaluation_and_three_times_besides(
        tmp_path):
    cfg = compose_cfg([*QUIET, "trainer.steps=2", "trainer.qn_steps=50", "optim.qn=ssbroyden"])
    trainer = build_trainer(cfg, RunPaths(tmp_path))
    trainer.clock.start()
    trainer.clock.start_loop()
    for _ in range(6):
        assert trainer._iteration() is None
    before = trainer.qn.evaluations
    with counting_reads() as (counts, at):
        for _ in range(10):
            at(trainer.step + 1)
            assert trainer._iteration() is None
    evaluations = trainer.qn.evaluations - before
    reads = sum(sum(c.values()) for c in counts.values())
    # Per iteration: the start point's check, one per line-search evaluation, the curvature
    # update, the reported terms, the guard; plus the terms logged at one logging step.
    assert evaluations >= 10 and reads <= evaluations + 4 * 10 + 2, (reads, evaluations)
