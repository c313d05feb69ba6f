"""The loss-and-gradient evaluation in a CUDA graph (pinn/training/capture.py): where it is not
used and why, the redraw's refill of the captured points, the fallback to eager evaluation on a
failed capture (all on the CPU); the same training with and without capture (CUDA only)."""
import pytest
import torch

from pinn.nn import build_model
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.sampling import Batch
from pinn.train import build_trainer
from pinn.training import EventLog
from pinn.training.capture import CapturedEvaluation, capture_refusal
from tests.conftest import compose_cfg

CUDA = torch.cuda.is_available()
GPU = torch.device("cuda")  # a device object needs no GPU; nothing is put there off CUDA
TINY = ["trainer.progress=false", "log.figures=false", "log.tensorboard=false",
        "sampler.n_interior=256", "sampler.n_initial=64", "sampler.n_boundary=64",
        "pde.eval_nx=33", "pde.eval_nt=17"]


def refusal(overrides, device=GPU, distributed=False):
    cfg = compose_cfg(overrides)
    model = build_model(cfg, build_pde(cfg.pde))
    return capture_refusal(cfg, model, device, distributed)


@pytest.mark.parametrize("overrides,device,distributed,expected", [
    ([], GPU, False, None),
    ([], torch.device("cpu"), False, "not a CUDA device"),
    (["trainer.cuda_graph=false"], GPU, False, "trainer.cuda_graph=false"),
    ([], GPU, True, "several ranks (the gradient all-reduce runs outside the graph)"),
    (["model.norm=batch", "model.activation=gelu"], GPU, False,
     "a BN network (its statistics change between evaluations)"),
    (["loss.causal=true"], GPU, False, "loss.causal=true (held causal weights)"),
    (["loss.attention=rba"], GPU, False, "loss.attention=rba"),
    (["trainer.debug_nan_at=3"], GPU, False, "trainer.debug_nan_at (fault injection)"),
])
def test_where_the_evaluation_is_not_captured_and_why(overrides, device, distributed, expected):
    assert refusal(overrides, device, distributed) == expected


def make(batch, loss=None):
    w = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    held = {"batch": batch}

    def default_loss():
        total = (w * held["batch"].interior).square().mean()
        return total, {"res": total}
    events = EventLog()
    ev = CapturedEvaluation(loss or default_loss, [w], batch=lambda: held["batch"],
                            use=lambda b: held.__setitem__("batch", b), key=lambda: 1,
                            events=events, step=lambda: 7)
    return ev, w, held, events


def batch_of(n, value):
    return Batch(torch.full((n, 2), value, dtype=torch.float64),
                 torch.zeros(0, 2, dtype=torch.float64),
                 (torch.full((4, 2), value, dtype=torch.float64),))


def test_a_redraw_refills_the_captured_points_in_place_and_new_shapes_do_not():
    first = batch_of(8, 1.0)
    ev, _, _, _ = make(first)
    ev._static = Batch(first.interior.clone(), first.initial.clone(),
                       (first.faces[0].clone(),))
    buffers = [ev._static.interior, ev._static.faces[0]]
    redraw = batch_of(8, 3.0)
    assert ev._refill(redraw) and ev._source is redraw
    assert ev._static.interior is buffers[0] and ev._static.faces[0] is buffers[1]  # in place
    assert torch.equal(buffers[0], redraw.interior) and torch.equal(buffers[1], redraw.faces[0])
    assert not ev._refill(batch_of(9, 3.0))  # another shape: a new capture


def test_a_failed_capture_trains_on_eagerly_and_says_why_once(monkeypatch):
    """On a CPU-only build the capture fails at its first CUDA call: the evaluation goes on
    eagerly, with the same numbers, and one event says so."""
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("no CUDA here\nsecond line")))
    ev, w, held, events = make(batch_of(8, 1.0))
    total, terms = ev()
    assert total.item() == pytest.approx(4.0) and w.grad.item() == pytest.approx(4.0)
    assert not ev.enabled and held["batch"].interior[0, 0] == 1.0
    assert [e["event"] for e in events.items] == [
        "CUDA graph: capture failed (RuntimeError: no CUDA here); evaluating eagerly from "
        "here on"]
    assert [e["step"] for e in events.items] == [7]
    ev()
    assert len(events.items) == 1 and w.grad.item() == pytest.approx(4.0)  # not accumulated


def test_the_cpu_trainer_evaluates_eagerly_and_records_nothing(tmp_path):
    tr = build_trainer(compose_cfg([*TINY, "trainer.steps=3", "trainer.qn_steps=0"]),
                       RunPaths(tmp_path))
    assert tr.captured is None
    tr.fit()
    assert not any("CUDA graph" in e["event"] for e in tr.events)


# -- CUDA ---------------------------------------------------------------------------------

def _train(tmp_path, graph: bool, extra=()):
    cfg = compose_cfg([*TINY, "device=cuda", "precision=float64", "trainer.steps=30",
                       "trainer.qn_steps=10", "optim.qn=ssbroyden", "sampler.resample_every=10",
                       f"trainer.cuda_graph={str(graph).lower()}", "trainer.log_every=5",
                       *extra])
    tr = build_trainer(cfg, RunPaths(tmp_path))
    metrics = tr.fit()
    return tr, metrics


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("extra", [[], ["pde=kovasznay"], ["derivatives.compile=true"]],
                         ids=["burgers", "kovasznay", "compiled"])
def test_captured_training_is_eager_training_to_rounding(tmp_path, extra):
    eager, m_eager = _train(tmp_path / "eager", False, extra)
    graph, m_graph = _train(tmp_path / "graph", True, extra)
    assert graph.captured is not None and graph.captured.enabled, graph.events
    assert graph.captured.captures == 1  # redraws refilled the buffers, no new capture
    assert any(e["event"].startswith("CUDA graph: the loss-and-gradient evaluation captured")
               for e in graph.events)
    for a, b in zip(eager.model.parameters(), graph.model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    assert m_graph["loss/total"] == pytest.approx(m_eager["loss/total"], rel=1e-8)
