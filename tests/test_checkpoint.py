"""Atomic writes of checkpoints and JSON files; checkpoints of earlier versions resume."""
from __future__ import annotations

import os
import stat

import torch

from pinn.checkpoint import load_checkpoint, write_json
from tests.conftest import REPO, compose_cfg


def test_atomic_writes_honour_the_umask(tmp_path):
    """metrics.json and checkpoints get the mode open() would give them, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "m.json")
        assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
        os.umask(0o077)
        write_json({"a": 1}, tmp_path / "private.json")
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


# -- checkpoints of earlier versions ------------------------------------------------------------
# Written by the trainer as it was before its parts moved to pinn/training/ (one class holding
# every field), stopped as SIGTERM stops a run after step 14 of OLD_RUN: in L-BFGS, BN frozen
# at step 8, RAD redraws every 5 steps, grad-norm balanced and causal weights, a stall window
# open, one rollback (lr x0.5) behind it.
OLD = REPO / "tests" / "data" / "checkpoints" / "heat_lbfgs_step14.pt"
OLD_RUN = ["pde=heat", "precision=float64", "model.norm=batch", "model.depth=2",
           "model.width=12", "model.activation=gelu", "bn.freeze_at=8", "trainer.steps=12",
           "trainer.qn_steps=8", "optim.qn=lbfgs", "trainer.checkpoint_every=3",
           "trainer.eval_every=100", "trainer.progress=false", "trainer.stall_iterations=3",
           "sampler.n_interior=96", "sampler.n_initial=24", "sampler.n_boundary=24",
           "sampler.resample_every=5", "sampler.adaptive=rad", "sampler.rad_oversample=3",
           "loss.balance=grad_norm", "loss.causal=true", "loss.causal_chunks=4",
           "log.divergence_every=4", "log.divergence_points=32", "pde.eval_nx=16",
           "pde.eval_nt=8", "log.figures=false", "log.tensorboard=false",
           "derivatives.compile=false", "trainer.debug_nan_at=5"]


def differences(a, b, path="") -> list:
    """Where two training states differ (tensors bitwise, with their dtypes)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        equal = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                 and a.dtype == b.dtype and torch.equal(a, b))
        return [] if equal else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys(), key=str)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_a_checkpoint_of_the_earlier_trainer_resumes_its_run(tmp_path):
    """Every key of the old training state is read back as written (the state the trainer
    gives after loading it equals the file's, key for key and bit for bit), and the resumed
    run ends where the uninterrupted run ends, with the same events. (On the machine that
    wrote the file the parameters are bitwise equal; elsewhere rounding in the first 14 steps
    may differ, which the tolerance allows: a state that did not resume would be far off.)"""
    from pinn.paths import RunPaths
    from pinn.train import build_trainer

    ckpt = load_checkpoint(OLD)
    state = ckpt.extra["training"]
    assert ckpt.step == state["step"] == 14 and state["rollbacks"] == 1 and state["stall"]
    cfg = compose_cfg(OLD_RUN)
    resumed = build_trainer(cfg, RunPaths(tmp_path / "resumed"), resume_step=ckpt.step)
    resumed.load_training_state(state)
    assert differences(resumed.training_state(), state) == []
    assert resumed.fit()["status"] == "completed"
    full = build_trainer(cfg, RunPaths(tmp_path / "full"))
    assert full.fit()["status"] == "completed"
    assert resumed.events == full.events
    assert any("rolled back to step 3" in e["event"] for e in full.events)
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
