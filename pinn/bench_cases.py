"""The cases of ``python -m pinn.bench``: the networks and point sets, their residuals, the
plain reverse-over-reverse loops the engines are timed against, one training step, and the
analytic FLOP counts (see :mod:`pinn.bench` for what each case measures)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from pinn.coords import Derivative
from pinn.derivatives import compute_derivatives
from pinn.derivatives_nd import nd_derivatives
from pinn.nn import MLP
from pinn.nn.norm import calibrate_bn, set_bn_mode
from pinn.taylor import taylor_derivatives, taylor_partials

TARGETS = {"a": 2.5, "b": 1.8, "c": 2.5, "d": 2.0}


# -- cases --------------------------------------------------------------------------------

@dataclass
class Case:
    key: str
    title: str
    dtype: torch.dtype
    n_points: int
    depth: int
    width: int
    n_out: int
    needed: tuple  # 1-D names (U, Ux, ...) or, for points of any dimension, Derivatives
    build: Callable[[], tuple]  # -> (model, x, t), or (model, points) where nd
    residual: Callable[[dict], torch.Tensor]
    plain_bn: Optional[str] = None  # BN mode of the plain loop's copy when it differs
    nd: bool = False  # inputs are (N, d) points and the engines those of ENGINES_ND


def _seed_case() -> tuple:
    torch.manual_seed(0)
    dt = torch.float64
    model = MLP(n_out=4, depth=8, width=80, activation="gelu", norm="batch",
                lower=(0.0, 0.0), upper=(2 * math.pi, 2 * math.pi)).to(dt)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1000, 1, generator=g, dtype=dt) * 2 * math.pi
    t = torch.rand(1000, 1, generator=g, dtype=dt) * 2 * math.pi
    calibrate_bn(model, x, t)
    set_bn_mode(model, "frozen")
    return model.train(), x, t


def _seed_detached_case() -> tuple:
    torch.manual_seed(0)
    dt = torch.float64
    model = MLP(n_out=1, depth=8, width=80, activation="gelu", norm="batch",
                lower=(-1.0, 0.0), upper=(1.0, 1.0)).to(dt)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1000, 1, generator=g, dtype=dt) * 2 - 1
    t = torch.rand(1000, 1, generator=g, dtype=dt)
    calibrate_bn(model, x, t)
    set_bn_mode(model, "detached")
    return model.train(), x, t


def _burgers_case() -> tuple:
    torch.manual_seed(0)
    dt = torch.float32
    model = MLP(n_out=1, depth=8, width=20, activation="tanh", lower=(-1.0, 0.0),
                upper=(1.0, 1.0)).to(dt)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(10_000, 1, generator=g, dtype=dt) * 2 - 1
    t = torch.rand(10_000, 1, generator=g, dtype=dt)
    return model.train(), x, t


def _kovasznay_case() -> tuple:
    torch.manual_seed(0)
    dt = torch.float64
    model = MLP(n_out=3, depth=4, width=20, activation="tanh", lower=(-0.5, -0.5),
                upper=(1.0, 1.5)).to(dt)
    g = torch.Generator().manual_seed(1)
    lower = torch.tensor([-0.5, -0.5], dtype=dt)
    span = torch.tensor([1.5, 2.0], dtype=dt)
    return model.train(), lower + span * torch.rand(10_000, 2, generator=g, dtype=dt)


def _d(output: int, alpha: tuple) -> Derivative:
    return Derivative(output, alpha)


KOVASZNAY_WANTED = ([_d(k, (0, 0)) for k in range(3)]
                    + [_d(k, a) for k in range(3) for a in ((1, 0), (0, 1))]
                    + [_d(k, a) for k in range(2) for a in ((2, 0), (0, 2))])


def _kovasznay_residual(f: dict) -> torch.Tensor:
    """The steady Navier-Stokes residuals at Re = 20 (N, 3): momentum x, y, continuity."""
    u, v = f[_d(0, (0, 0))], f[_d(1, (0, 0))]
    lap = lambda k: f[_d(k, (2, 0))] + f[_d(k, (0, 2))]  # noqa: E731
    mx = u * f[_d(0, (1, 0))] + v * f[_d(0, (0, 1))] + f[_d(2, (1, 0))] - lap(0) / 20.0
    my = u * f[_d(1, (1, 0))] + v * f[_d(1, (0, 1))] + f[_d(2, (0, 1))] - lap(1) / 20.0
    return torch.stack([mx, my, f[_d(0, (1, 0))] + f[_d(1, (0, 1))]], dim=1)


NU = 0.01 / math.pi

CASES = {
    "a": Case("a", "seed: 2->8x[Linear(80),BN frozen,GELU]->4, float64, N=1000",
              torch.float64, 1000, 8, 80, 4, ("U", "Ux", "Ut", "Uxx", "Utt"), _seed_case,
              lambda d: d["Ut"] + d["U"] * d["Ux"] - 0.1 * (d["Uxx"] + d["Utt"])),
    "b": Case("b", "Burgers (Raissi): 2->8x[20,tanh]->1, float32, N=10000",
              torch.float32, 10_000, 8, 20, 1, ("U", "Ux", "Ut", "Uxx"), _burgers_case,
              lambda d: d["Ut"] + d["U"] * d["Ux"] - NU * d["Uxx"]),
    "c": Case("c", "seed, one output: 2->8x[Linear(80),BN detached,GELU]->1, float64, N=1000; "
              "plain: eval-mode BN", torch.float64, 1000, 8, 80, 1, ("U", "Ux", "Ut", "Uxx"),
              _seed_detached_case, lambda d: d["Ut"] + d["U"] * d["Ux"] - NU * d["Uxx"],
              plain_bn="frozen"),
    "d": Case("d", "Kovasznay (2-D, steady Navier-Stokes): 2->4x[20,tanh]->3, float64, "
              "N=10000", torch.float64, 10_000, 4, 20, 3, tuple(KOVASZNAY_WANTED),
              _kovasznay_case, _kovasznay_residual, nd=True),
}


# -- the plain loop -----------------------------------------------------------------------

def plain_derivatives(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                      needed: tuple) -> Dict[str, torch.Tensor]:
    """Reverse-over-reverse autograd, as PINN codes usually write it.

    Args:
        model: maps (N, 2) to (N, n_out).
        x, t: (N, 1) each.
        needed: keys among U, Ux, Ut, Uxx, Utt.

    Returns:
        dict of (N, n_out) tensors, differentiable with respect to the parameters.
    """
    xt = torch.cat([x, t], dim=1).requires_grad_(True)
    u = model(xt)
    cols: Dict[str, list] = {k: [] for k in needed if k != "U"}
    for k in range(u.shape[1]):
        g = torch.autograd.grad(u[:, k].sum(), xt, create_graph=True)[0]  # (N, 2)
        ux, ut = g[:, :1], g[:, 1:]
        if "Ux" in cols:
            cols["Ux"].append(ux)
        if "Ut" in cols:
            cols["Ut"].append(ut)
        if "Uxx" in cols:
            cols["Uxx"].append(torch.autograd.grad(ux.sum(), xt, create_graph=True)[0][:, :1])
        if "Utt" in cols:
            cols["Utt"].append(torch.autograd.grad(ut.sum(), xt, create_graph=True)[0][:, 1:])
    out = {k: torch.cat(v, dim=1) for k, v in cols.items()}
    out["U"] = u
    return out


def plain_partials(model: torch.nn.Module, points: torch.Tensor,
                   needed: tuple) -> Dict[Derivative, torch.Tensor]:
    """Reverse-over-reverse autograd on (N, d) points, as PINN codes usually write it: one
    reverse pass per output with a partial, one more per output and axis of a pure second
    partial.

    Returns:
        each Derivative of ``needed`` (values, first and pure second partials) as an (N,)
        tensor, differentiable with respect to the parameters.
    """
    p = points.detach().requires_grad_(True)
    u = model(p)  # (N, n_out)
    out: Dict[Derivative, torch.Tensor] = {}
    for k in sorted({d.output for d in needed}):
        mine = [d for d in needed if d.output == k]
        g = None
        for d in mine:
            order = sum(d.alpha)
            if order == 0:
                out[d] = u[:, k]
                continue
            if g is None:
                g = torch.autograd.grad(u[:, k].sum(), p, create_graph=True)[0]  # (N, d)
            axis = max(range(len(d.alpha)), key=lambda i: d.alpha[i])
            if order == 1:
                out[d] = g[:, axis]
            elif order == 2 and d.alpha[axis] == 2:
                out[d] = torch.autograd.grad(g[:, axis].sum(), p, create_graph=True)[0][:, axis]
            else:
                raise ValueError(f"the plain loop computes values, first and pure second "
                                 f"partials, not {d}")
    return out


ENGINES_ND: Dict[str, Callable] = {
    "plain": plain_partials,
    "autograd": lambda m, p, needed: nd_derivatives(m, p, needed),
    "taylor": lambda m, p, needed: taylor_partials(m, p, needed),
    "taylor+compile": lambda m, p, needed: taylor_partials(m, p, needed, compile=True),
}


ENGINES: Dict[str, Callable] = {
    "plain": plain_derivatives,
    "autograd": lambda m, x, t, needed: compute_derivatives(m, x, t, needed, create_graph=True),
    "taylor": lambda m, x, t, needed: taylor_derivatives(m, x, t, needed),
    "taylor+compile": lambda m, x, t, needed: taylor_derivatives(m, x, t, needed, compile=True),
}


#: An engine name with this suffix: the whole step (derivatives, loss, backward, Adam) captured
#: in a CUDA graph and replayed (CUDA only).
GRAPH = "+graph"


def make_step(case: Case, engine: str, model: torch.nn.Module,
              *inputs: torch.Tensor) -> Callable[[], float]:
    """One training step of ``engine`` on its own copy of the model; returns the loss.
    ``inputs``: x and t, or the (N, d) points of an ``nd`` case. ``<engine>+graph``: the same
    step captured in a CUDA graph after three eager steps on a side stream (Adam with
    ``capturable=True``, its step counts on the device)."""
    graphed = engine.endswith(GRAPH)
    base = engine[:-len(GRAPH)] if graphed else engine
    model = copy.deepcopy(model)
    if base == "plain" and case.plain_bn is not None:
        set_bn_mode(model, case.plain_bn)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=graphed)
    derivatives = (ENGINES_ND if case.nd else ENGINES)[base]

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        d = derivatives(model, *inputs, case.needed)
        r = case.residual(d)  # (N, n_eq)
        # one mean square per equation, summed (a single equation: the mean square)
        loss = r.square().mean(dim=0).sum() if case.nd else r.square().mean()
        loss.backward()
        opt.step()
        return loss.detach()

    return capture_step(step) if graphed else step


def capture_step(step: Callable[[], torch.Tensor], warmup: int = 3) -> Callable[[], torch.Tensor]:
    """``step`` captured in a CUDA graph (PyTorch's whole-network recipe): ``warmup`` eager
    steps on a side stream, then one captured; the returned function replays it and returns
    its loss (the graph's output buffer)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step()

    def replay() -> torch.Tensor:
        graph.replay()
        return loss
    return replay


# -- FLOPs, GEMM rate, memory -------------------------------------------------------------

def _as_alphas(needed: tuple) -> List[tuple]:
    """(output or None, multi-index) of each request: 1-D names on all outputs (None)."""
    names = {"U": (0, 0), "Ux": (1, 0), "Ut": (0, 1), "Uxx": (2, 0), "Utt": (0, 2)}
    return [(None, names[k]) if isinstance(k, str) else (k.output, k.alpha) for k in needed]


def n_channels(needed: tuple) -> tuple:
    """(n1, n2): the Taylor engine's first-derivative channels (axes differentiated along) and
    second-derivative channels (axes of a pure second partial)."""
    alphas = [a for _, a in _as_alphas(needed)]
    n1 = len({i for a in alphas for i, k in enumerate(a) if k})
    n2 = len({i for a in alphas for i, k in enumerate(a) if k == 2})
    return n1, n2


def _plain_passes(case: Case) -> tuple:
    """(n_first, n_second): the plain loop's first-order reverse passes (one per output
    differentiated) and second-order ones (one per output and axis of a second partial)."""
    req = _as_alphas(case.needed)
    outputs = lambda o: range(case.n_out) if o is None else (o,)  # noqa: E731
    first = {k for o, a in req if sum(a) for k in outputs(o)}
    second = {(k, a) for o, a in req if sum(a) == 2 for k in outputs(o)}
    return len(first), len(second)


def flops_taylor(case: Case) -> float:
    n1, n2 = n_channels(case.needed)
    C, N, w, L = 1 + n1 + n2, case.n_points, case.width, case.depth
    return 3 * C * N * (2 * (L - 1) * w * w + 2 * w * case.n_out) + 2 * (2 * N * 2 * w)


def flops_plain(case: Case) -> float:
    N, w, L = case.n_points, case.width, case.depth
    F = 2 * N * (2 * w + (L - 1) * w * w + w * case.n_out)
    n_first, n_second = _plain_passes(case)
    return 3 * F * (1 + n_first + 2 * n_second)
