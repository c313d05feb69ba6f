"""``torch.compile`` for the engine's pure functions: an eager fallback, a record of every
compilation, and the cache of bound (forward, backward) pairs.

The engine compiles pure tensor functions only (the pointwise maps of :mod:`.pointwise`, the
whole-network passes of :mod:`.chained`), each with a twin written for eager execution that
computes the same values. A compiler that fails once (none installed, an unsupported operation,
failed code generation) is not tried again in the process: everything runs eagerly from then
on, and :func:`compile_status` says why.
"""
from __future__ import annotations

import logging
import time
import types
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def _fresh(fn: Callable) -> Callable:
    """A copy of ``fn`` with its own code object: the compiler caches compiled graphs (and caps
    their number) per code object, so each bound pointwise map gets its own cache."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def _signature(v):
    """A hashable summary (shapes, dtypes, nesting) of a call's arguments."""
    if isinstance(v, Tensor):
        return (tuple(v.shape), v.dtype)
    if isinstance(v, (list, tuple)):
        return tuple(_signature(u) for u in v)
    return v


def _graph_count() -> Optional[int]:
    """Graphs compiled so far in this process (None where the counter is not available)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - diagnostics only
        return None


class _Compiled:
    """A pure tensor function run through ``torch.compile``, with an automatic eager fallback.

    The first call with each new argument signature (shapes, dtypes) is timed; when it compiled
    a graph, the time (compilation plus one run) is recorded. Any exception from the compiler
    (none installed, an unsupported operation, failed code generation) switches to ``eager``
    (the same function written for eager execution) for good, and every function compiled
    later in the process runs eagerly from the start: a compiler that failed once is not
    retried (each try would cost seconds). The reason is recorded and logged once. The
    functions have no side effects, so the failed call is simply repeated.
    """

    def __init__(self, name: str, fn: Callable, eager: Callable):
        self.name = name
        self.eager = eager  # same results as fn, written for eager execution
        self.compiled: Optional[Callable] = None
        self.seen: set = set()
        if _broken_compiler():
            return
        try:
            self.compiled = torch.compile(_fresh(fn), fullgraph=True)
        except Exception as e:  # noqa: BLE001 - whatever the failure, run eagerly
            self._fail(e)

    def _fail(self, e: BaseException, seconds: Optional[float] = None) -> None:
        msg = str(e).strip()
        detail = f"{type(e).__name__}: {msg.splitlines()[0] if msg else ''}"[:300]
        self.compiled = None
        first = not _broken_compiler()
        _EVENTS.append({"function": self.name, "ok": False, "seconds": seconds, "detail": detail})
        if first:
            log.warning("taylor: torch.compile failed for %s; running eagerly from now on (%s)",
                        self.name, detail)

    def __call__(self, *args):
        if self.compiled is None:
            return self.eager(*args)
        sig = _signature(args)
        if sig in self.seen:
            return self.compiled(*args)
        if _broken_compiler():  # another function's compilation failed: do not retry
            self.compiled = None
            return self.eager(*args)
        before, t0 = _graph_count(), time.perf_counter()
        try:
            out = self.compiled(*args)
        except Exception as e:  # noqa: BLE001
            self._fail(e, time.perf_counter() - t0)
            return self.eager(*args)
        seconds = time.perf_counter() - t0
        self.seen.add(sig)
        after = _graph_count()
        if before is None or after is None or after > before:
            shapes = ", ".join(str(tuple(a.shape)) for a in _flatten(args))
            _EVENTS.append({"function": self.name, "ok": True, "seconds": seconds,
                            "detail": shapes})
            log.info("taylor: compiled %s in %.1f s", self.name, seconds)
        return out


def _broken_compiler() -> bool:
    """Whether a compilation has failed in this process (see :class:`_Compiled`)."""
    return any(not e["ok"] for e in _EVENTS)


def _flatten(v) -> List[Tensor]:
    """The tensors in a nest of lists and tuples, in order."""
    if isinstance(v, Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [u for w in v for u in _flatten(w)]
    return []


_EVENTS: List[dict] = []
_CACHE: Dict[tuple, Tuple[Callable, Callable]] = {}


def compile_events() -> List[dict]:
    """Every compilation so far: ``function`` (which pointwise map), ``ok``, ``seconds``
    (compilation plus the first run; for a failure the time the attempt took, None when it
    failed before running) and ``detail`` (argument shapes, or the error that caused the eager
    fallback)."""
    return [dict(e) for e in _EVENTS]


def compile_seconds() -> float:
    """Seconds spent compiling so far in this process: each compilation's time (including one
    run of the compiled function) and the time lost to failed attempts."""
    return float(sum(e["seconds"] or 0.0 for e in _EVENTS))


def compile_status(since: int = 0) -> str:
    """One line on compilation: what was compiled after the first ``since`` events of
    :func:`compile_events` (with the compile time), graphs reused from earlier in this process,
    or falling back to eager and why (a fallback lasts for the process)."""
    ok = [e for e in _EVENTS[since:] if e["ok"]]
    failed = [e for e in _EVENTS if not e["ok"]]
    parts = []
    if ok:
        parts.append(f"compiled {len(ok)} graph(s) in {sum(e['seconds'] for e in ok):.1f} s")
    elif any(e["ok"] for e in _EVENTS[:since]):
        parts.append("reused the graphs compiled earlier in this process")
    if failed:
        lost = sum(e["seconds"] or 0.0 for e in failed)
        parts.append(f"eager fallback ({lost:.1f} s lost): {failed[0]['detail']}")
    return "; ".join(parts) or "eager (nothing compiled)"


def reset_compiled() -> None:
    """Forget the compiled functions and the recorded events."""
    _CACHE.clear()
    _EVENTS.clear()



def bound_pair(key: tuple, name: str, bind: Callable[[bool], Tuple[Callable, Callable]],
               compile: bool) -> Tuple[Callable, Callable]:
    """The (forward, backward) functions for ``key``, built once per process.

    Args:
        key: everything the functions depend on besides their tensor arguments.
        name: what they compute, for the compile events ("..., forward" and "..., backward").
        bind: ``bind(eager)`` -> (forward, backward) with the static arguments bound; the
            eager pair (``eager=True``) runs without a compiler, the other is compiled.
        compile: run them through ``torch.compile`` (eager fallback) or eagerly.
    """
    key = (*key, compile)
    if key not in _CACHE:
        fwd, bwd = bind(True)
        if compile:
            cfwd, cbwd = bind(False)
            fwd, bwd = (_Compiled(f"{name}, forward", cfwd, fwd),
                        _Compiled(f"{name}, backward", cbwd, bwd))
        _CACHE[key] = (fwd, bwd)
    return _CACHE[key]
