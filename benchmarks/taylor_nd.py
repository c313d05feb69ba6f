"""Training-step time beyond (x, t) and beyond second order: the Taylor engine against
reverse-mode autograd.

    python benchmarks/taylor_nd.py [--case kovasznay|kdv|kuramoto_sivashinsky] [--n 10000]
        [--reps 30] [--dtypes float64,float32] [--engines autograd,taylor,taylor+compile]
        [--threads 1] [--json out.json]

Cases:

- ``kovasznay`` (default): a Kovasznay-size network, MLP 2 -> 4 x [50, tanh] -> 3 (u, v, p),
  on N points in [-0.5, 1] x [-0.5, 1.5]; the request of the steady Navier-Stokes residuals:
  the three values, all six first partials, and u_xx, u_yy, v_xx, v_yy. A step: the fields,
  the mean square of every returned field summed, ``backward()`` (no optimizer step).
- ``kdv``, ``kuramoto_sivashinsky``: the problem of ``configs/pde/<case>.yaml`` with the
  default network of a run (``configs/model/mlp.yaml``: 2 -> 4 x [20, tanh] -> 1), on N
  interior points of its domain (Sobol); the request of its residual (u, u_t, u_x, u_xxx;
  u, u_t, u_x, u_xx, u_xxxx), which the Taylor engine carries as jets. A step: the fields
  (:func:`pinn.fields.point_fields`, as a run takes them), the residual's mean square,
  ``backward()`` and an Adam step.

Engines:

- ``autograd``: :func:`pinn.derivatives_nd.nd_derivatives`, the reference;
- ``taylor``: :func:`pinn.taylor.taylor_partials`, eager;
- ``taylor+compile``: the same with ``compile=True``.

Each engine has its own copy of the network; they are interleaved (the order rotating every
repetition) after untimed warm-up steps that include any compilation. Printed per engine: the
median, fastest and interquartile range of the step times (ms), the autograd median over the
engine's (``x autograd``) and the same for the fastest steps (``(min)``, the least disturbed
estimate on a shared machine), and the relative difference of its parameter gradient from the
reference's (at the first step, before any update).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from pinn.coords import Derivative
from pinn.derivatives_nd import nd_derivatives
from pinn.fields import point_fields
from pinn.nn import MLP
from pinn.taylor import compile_status, reset_compiled, taylor_partials, tune_allocator

CASES = ("kovasznay", "kdv", "kuramoto_sivashinsky")

WANTED = ([Derivative(k, (0, 0)) for k in range(3)]
          + [Derivative(k, a) for k in range(3) for a in ((1, 0), (0, 1))]
          + [Derivative(k, a) for k in range(2) for a in ((2, 0), (0, 2))])

ENGINES = {
    "autograd": lambda m, p: nd_derivatives(m, p, WANTED),
    "taylor": lambda m, p: taylor_partials(m, p, WANTED),
    "taylor+compile": lambda m, p: taylor_partials(m, p, WANTED, compile=True),
}


def make_step(model: torch.nn.Module, points: torch.Tensor, engine: str):
    """(step, the engine's copy of the model): one step returns the loss (no optimizer, so
    ``update`` changes nothing)."""
    model = copy.deepcopy(model)
    fields_of = ENGINES[engine]

    def step(update: bool = True) -> torch.Tensor:
        for q in model.parameters():
            q.grad = None
        fields = fields_of(model, points)
        loss = sum(f.square().mean() for f in fields.values())
        loss.backward()
        return loss.detach()
    return step, model


def make_pde_step(model: torch.nn.Module, pde, points: torch.Tensor, engine: str):
    """(step, the engine's copy of the model) for a problem's residual: one step (an Adam step
    unless ``update`` is False) returns the loss."""
    from pinn.pdes.unknowns import learned_values

    model = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    options = {"engine": "autograd"} if engine == "autograd" else {
        "engine": "taylor", "compile": engine == "taylor+compile"}

    def step(update: bool = True) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        fields = point_fields(model, points, pde.wanted, **options)
        loss = pde.residual_at(points, fields, learned_values(model)).square().mean()
        loss.backward()
        if update:
            optimizer.step()
        return loss.detach()
    return step, model


def kovasznay_steps(dtype: torch.dtype, n: int, engines: list) -> dict:
    torch.manual_seed(0)
    model = MLP(n_out=3, depth=4, width=50, activation="tanh", lower=(-0.5, -0.5),
                upper=(1.0, 1.5)).to(dtype)
    g = torch.Generator().manual_seed(1)
    lower = torch.tensor([-0.5, -0.5], dtype=torch.float64)
    span = torch.tensor([1.5, 2.0], dtype=torch.float64)
    points = (lower + span * torch.rand(n, 2, generator=g, dtype=torch.float64)).to(dtype)
    return {e: make_step(model, points, e) for e in engines}


def problem_steps(case: str, dtype: torch.dtype, n: int, engines: list) -> dict:
    """The problem ``case`` with the default network of a run (seed 0), on n interior
    points."""
    from hydra import compose, initialize_config_dir

    from pinn.config import CONFIG_DIR, register_configs
    from pinn.nn import build_model
    from pinn.pdes import build_pde
    from pinn.sampling import Sampler

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name="train", overrides=[f"pde={case}"])
    torch.manual_seed(0)
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde).to(dtype)
    points = Sampler("sobol", n, 0, 0, pde.domain, dtype,
                     torch.Generator().manual_seed(1)).sample().interior
    return {e: make_pde_step(model, pde, points, e) for e in engines}


def measure(case: str, dtype: torch.dtype, n: int, engines: list, reps: int,
            warmup: int) -> dict:
    reset_compiled()
    steps = (kovasznay_steps(dtype, n, engines) if case == "kovasznay"
             else problem_steps(case, dtype, n, engines))
    grads = {}
    for e, (step, m) in steps.items():
        step(update=False)  # also the first warm-up step
        grads[e] = torch.cat([q.grad.reshape(-1) for q in m.parameters()])
        for _ in range(warmup - 1):
            step()
    times = {e: [] for e in engines}
    for r in range(reps):
        for e in engines[r % len(engines):] + engines[:r % len(engines)]:
            t0 = time.perf_counter()
            steps[e][0]()
            times[e].append(time.perf_counter() - t0)
    ref = grads[engines[0]]
    out = {}
    for e in engines:
        ts = sorted(times[e])
        out[e] = {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * ts[0],
                  "iqr_ms": 1e3 * (ts[(3 * len(ts)) // 4] - ts[len(ts) // 4]),
                  "grad_rel_diff": float((grads[e] - ref).norm() / ref.norm())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="kovasznay", choices=CASES,
                    help="the network, points and request (default kovasznay)")
    ap.add_argument("--n", type=int, default=10_000, help="points (default 10000)")
    ap.add_argument("--reps", type=int, default=30, help="timed steps per engine")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per engine first")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--engines", default="autograd,taylor,taylor+compile",
                    help="comma-separated, the first is the reference: " + ", ".join(ENGINES))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e!r}: one of {', '.join(ENGINES)}")
    dtypes = [d for d in args.dtypes.split(",") if d]
    for d in dtypes:
        if d not in ("float32", "float64"):
            ap.error(f"unknown dtype {d!r}: float32 or float64")
    torch.set_num_threads(args.threads)
    tune_allocator()  # as in training, for every engine
    results = {}
    for d in dtypes:
        res = measure(args.case, getattr(torch, d), args.n, engines, args.reps,
                      max(args.warmup, 1))
        results[d] = res
        ref = res[engines[0]]
        print(f"\n{args.case}, {d}, N = {args.n}, {args.threads} thread(s); compile: "
              f"{compile_status()}")
        print(f"{'engine':<16}{'median ms':>10}{'min ms':>9}{'IQR ms':>8}{'x autograd':>11}"
              f"{'(min)':>7}{'grad rel diff':>15}")
        for e, r in res.items():
            print(f"{e:<16}{r['median_ms']:>10.1f}{r['min_ms']:>9.1f}{r['iqr_ms']:>8.1f}"
                  f"{ref['median_ms'] / r['median_ms']:>11.2f}"
                  f"{ref['min_ms'] / r['min_ms']:>7.2f}{r['grad_rel_diff']:>15.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
