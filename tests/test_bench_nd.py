"""The benchmark's 2-D case (Kovasznay): its plain reverse-over-reverse loop against the
reference engine, its analytic FLOP counts against torch's profiler, and a short run."""
from __future__ import annotations

import json

import torch

from pinn import bench
from pinn.derivatives_nd import nd_derivatives


def _small_case():
    model, points = bench._kovasznay_case()
    return model, points[:300]


def test_the_plain_loop_on_points_equals_the_reference_engine():
    model, points = _small_case()
    wanted = bench.KOVASZNAY_WANTED
    plain = bench.plain_partials(model, points, tuple(wanted))
    ref = nd_derivatives(model, points, wanted)
    assert set(plain) == set(wanted)
    for d in wanted:
        torch.testing.assert_close(plain[d], ref[d], rtol=1e-13, atol=1e-13)


def test_the_kovasznay_residual_vanishes_on_the_closed_form():
    """The residual written in the benchmark is the steady Navier-Stokes one: zero on
    Kovasznay's solution (its derivatives by autograd), not on a perturbation of it."""
    lam = 10.0 - (100.0 + 4 * torch.pi**2) ** 0.5

    def exact(p):
        x, y = p[:, :1], p[:, 1:]
        e = torch.exp(lam * x)
        return torch.cat([1 - e * torch.cos(2 * torch.pi * y),
                          lam / (2 * torch.pi) * e * torch.sin(2 * torch.pi * y),
                          (1 - torch.exp(2 * lam * x)) / 2], dim=1)

    _, points = _small_case()
    fields = nd_derivatives(exact, points, bench.KOVASZNAY_WANTED, create_graph=False)
    assert bench._kovasznay_residual(fields).abs().max() < 1e-12
    fields[bench._d(2, (1, 0))] = fields[bench._d(2, (1, 0))] + 1e-3
    assert bench._kovasznay_residual(fields).abs().max() > 1e-4


def test_the_analytic_flop_counts_match_the_profiler():
    case = bench.CASES["d"]
    small = bench.Case(**{**case.__dict__, "n_points": 300, "build": _small_case})
    model, points = _small_case()
    for engine, analytic in (("plain", bench.flops_plain(small)),
                             ("taylor", bench.flops_taylor(small))):
        counted = bench.counted_flops(bench.make_step(small, engine, model, points))
        assert counted is not None
        assert abs(counted - analytic) / analytic < 0.05, (engine, counted, analytic)


def test_the_two_dimensional_case_runs(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--cases", "d", "--reps", "1", "--warmup", "1", "--engines",
                       "plain,taylor", "--json", str(out)]) == 0
    case = json.loads(out.read_text())["cases"][0]
    assert case["case"] == "d" and case["target"] == 2.0
    assert set(case["engines"]) == {"plain", "taylor"}
