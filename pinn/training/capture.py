"""The loss-and-gradient evaluation in a CUDA graph (``trainer.cuda_graph``, CUDA only).

Below about 100,000 points a GPU training step is bound by kernel launches: the evaluation
(derivatives, residual, loss terms, ``backward()``) is hundreds of small kernels, each launched
from Python. Captured once in a CUDA graph and replayed, it costs one launch. Both stages use it:
Adam's step evaluates once per step, a quasi-Newton line search once per trial point (the
parameters are changed in place, so the graph sees them).

What a graph needs and how it is kept:

- fixed memory: the points are captured buffers; a redraw copies the new points into them
  (:meth:`CapturedEvaluation.__call__` notices a new batch by identity), and new shapes, new
  loss weights (``loss.balance``) or another derivative engine capture again;
- no host read inside (``tests/test_host_reads.py`` holds the evaluation to that);
- a few eager evaluations before capture, on a side stream (CUDA initializes its libraries and
  ``torch.compile`` compiles there); they change nothing, the evaluation being a pure function
  of the parameters in the configurations captured;
- the same numbers: right after each capture the replay is compared with an eager evaluation
  (the loss, relative 1e-9 in float64, 1e-4 in float32); a mismatch or any error while
  capturing ends capture for the run with one event, and training goes on eagerly.

Not captured (eager evaluation, the reason recorded once as an event): the CPU, several ranks
(the gradient all-reduce), BN networks (their running statistics and shared batch statistics
change between evaluations), causal weighting (its held weights), residual attention in the
loss, and the fault injection of the tests (``trainer.debug_nan_at``).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig
from torch import nn

from pinn.config import choice
from pinn.training.events import EventLog

Terms = Tuple[torch.Tensor, Dict[str, torch.Tensor]]

#: Eager evaluations on a side stream before a capture.
WARMUP = 2


def evaluate_eagerly(loss: Callable[[], Terms], params) -> Terms:
    """``loss()`` and its gradient in the ``.grad`` of ``params`` (set afresh)."""
    for p in params:
        p.grad = None
    total, terms = loss()
    total.backward()
    return total, terms


def capture_refusal(cfg: DictConfig, model: nn.Module, device: torch.device,
                    distributed: bool) -> Optional[str]:
    """Why this run's evaluation is not captured, or None when it is."""
    if not cfg.trainer.get("cuda_graph", True):
        return "trainer.cuda_graph=false"
    if device.type != "cuda":
        return "not a CUDA device"
    if distributed:
        return "several ranks (the gradient all-reduce runs outside the graph)"
    if any(m.__class__.__name__ == "BatchNorm" for m in model.modules()):
        return "a BN network (its statistics change between evaluations)"
    if cfg.loss.get("causal", False):
        return "loss.causal=true (held causal weights)"
    if choice(cfg.loss.attention) != "none":
        return f"loss.attention={choice(cfg.loss.attention)}"
    if cfg.trainer.debug_nan_at is not None:
        return "trainer.debug_nan_at (fault injection)"
    return None


class CapturedEvaluation:
    """``loss()`` and its ``backward()`` as one replayed CUDA graph.

    Args:
        loss: () -> (total, terms) on the current points, a pure function of the parameters.
        params: the parameters whose gradients the evaluation leaves in ``.grad``.
        batch: () -> the current points (a :class:`pinn.sampling.Batch`); a new object is a
            redraw.
        use: sets the points ``loss()`` reads (the captured copy while capturing).
        key: () -> what else the captured graph depends on (loss weights, engine name); a
            change captures again.
        events: where a capture, and the end of capturing, are recorded.
        step: () -> the current step, for the events.
    """

    def __init__(self, loss: Callable[[], Terms], params: List[torch.Tensor],
                 batch: Callable[[], object], use: Callable[[object], None],
                 key: Callable[[], object], events: EventLog, step: Callable[[], int]):
        self.loss, self.params, self.batch, self.key = loss, params, batch, key
        self._use = use
        self.events, self.step = events, step
        self.enabled = True
        self.captures = 0
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._outputs: Optional[Terms] = None
        self._grads: List[torch.Tensor] = []
        self._static = None  # the captured points (the batch object the graph reads)
        self._source = None  # the batch last copied into them
        self._key = None

    # -- eager ------------------------------------------------------------------------------
    def eager(self) -> Terms:
        return evaluate_eagerly(self.loss, self.params)

    # -- captured ---------------------------------------------------------------------------
    def __call__(self) -> Terms:
        if not self.enabled:
            return self.eager()
        batch = self.batch()
        if self._graph is None or self.key() != self._key or not self._refill(batch):
            if not self._capture(batch):
                return self.eager()
        self._graph.replay()
        for p, g in zip(self.params, self._grads):
            p.grad = g
        total, terms = self._outputs
        return total.detach().clone(), {k: v.detach().clone() for k, v in terms.items()}

    def _refill(self, batch) -> bool:
        """Copy a redraw's points into the captured buffers; False when their shapes differ."""
        if batch is self._source or batch is self._static:
            return True
        new, old = _tensors(batch), _tensors(self._static)
        if len(new) != len(old) or any(a.shape != b.shape or a.dtype != b.dtype
                                       for a, b in zip(new, old)):
            return False
        with torch.no_grad():
            for a, b in zip(old, new):
                a.copy_(b)
        self._source = batch
        return True

    def _capture(self, batch) -> bool:
        """Capture the evaluation on a copy of ``batch``; False (capturing ended, one event)
        on any failure or when the replay disagrees with the eager evaluation."""
        try:
            self._graph = None
            static = _copy(batch)
            self._use(static)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(WARMUP):
                    self.eager()
            torch.cuda.current_stream().wait_stream(stream)
            grads = [torch.zeros_like(p) for p in self.params]
            graph = torch.cuda.CUDAGraph()
            for p, g in zip(self.params, grads):
                p.grad = g
            with torch.cuda.graph(graph):
                for g in grads:
                    g.zero_()
                total, terms = self.loss()
                total.backward()
            self._graph, self._outputs = graph, (total, terms)
            self._grads = [p.grad for p in self.params]
            self._static, self._source, self._key = static, batch, self.key()
            self._graph.replay()
            captured = float(self._outputs[0])
            eager = float(self.eager()[0])
            tol = 1e-9 if self._outputs[0].dtype == torch.float64 else 1e-4
            if not abs(captured - eager) <= tol * max(abs(eager), 1e-300):
                raise RuntimeError(f"the replayed loss {captured:.17g} differs from the eager "
                                   f"one {eager:.17g}")
        except Exception as e:  # noqa: BLE001 - any failure: train on, eagerly, and say why
            self._graph, self.enabled = None, False
            self._use(batch)
            why = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.events.add(self.step(), f"CUDA graph: capture failed ({type(e).__name__}: "
                                         f"{why[:160]}); evaluating eagerly from here on")
            return False
        self._use(batch)
        self.captures += 1
        if self.captures == 1:
            self.events.add(self.step(), "CUDA graph: the loss-and-gradient evaluation "
                                         "captured; replayed from here on")
        return True


def _tensors(batch) -> List[torch.Tensor]:
    out: List[torch.Tensor] = []
    for value in vars(batch).values():
        if torch.is_tensor(value):
            out.append(value)
        elif isinstance(value, (tuple, list)):
            out.extend(v for v in value if torch.is_tensor(v))
    return out


def _copy(batch):
    """A batch of the same type whose tensors are fresh copies (the graph's buffers)."""
    fields = {}
    for name, value in vars(batch).items():
        if torch.is_tensor(value):
            fields[name] = value.detach().clone()
        elif isinstance(value, (tuple, list)):
            fields[name] = type(value)(v.detach().clone() if torch.is_tensor(v) else v
                                       for v in value)
        else:
            fields[name] = value
    return type(batch)(**fields)


__all__ = ["CapturedEvaluation", "WARMUP", "capture_refusal", "evaluate_eagerly"]
