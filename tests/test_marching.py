"""Time marching (trainer.time_windows, pinn/marching.py): the windows' configs and grids, the
initial value taken from the previous window's network, the piecewise network, a run end to
end, load_run, and the refusals."""
import json

import numpy as np
import pytest
import torch

import pinn
from pinn.evaluation import grid_errors, make_eval_grid, predict_grid
from pinn.marching import (InitialFromNetwork, WindowedModel, restrict, start_from_previous,
                           window_config, window_edges, windows_refusal)
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.train import run
from tests.conftest import compose_cfg, run_cli

SMALL = ["precision=float64", "model.depth=2", "model.width=16", "trainer.progress=false",
         "sampler.n_interior=512", "sampler.n_initial=64", "sampler.n_boundary=64",
         "log.figures=false", "pde.eval_nx=41", "pde.eval_nt=21", "trainer.eval_every=1000"]


def test_windows_split_the_interval_and_the_budget():
    assert window_edges(0.0, 1.0, 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    legacy = window_config(compose_cfg(["pde=heat", "trainer.max_minutes=10"]), 0.25, 0.5, 2.5)
    assert (legacy.pde.t_min, legacy.pde.t_max, legacy.trainer.max_minutes) == (0.25, 0.5, 2.5)
    assert legacy.trainer.time_windows == 1
    box = window_config(compose_cfg(["pde=heat2d"]), 0.5, 1.0, None)
    assert list(box.pde.domain.t) == [0.5, 1.0] and build_pde(box.pde).domain.time == (0.5, 1.0)


def test_the_windows_grids_cover_the_whole_grid_once():
    cfg = compose_cfg(["pde=heat2d", "pde.eval_points.t=11"])
    pde = build_pde(cfg.pde)
    grid = make_eval_grid(pde, cfg.pde)
    edges = window_edges(0.0, 1.0, 3)
    parts = [restrict(grid, edges[k], edges[k + 1], k == 2) for k in range(3)]
    assert np.array_equal(np.concatenate([p.coords[-1] for p in parts]), grid.coords[-1])
    assert np.array_equal(np.concatenate([p.reference for p in parts]), grid.reference)
    assert parts[1].axes == ("x", "y", "t") and parts[1].reference.shape[1:] == (51, 51, 1)


def test_the_piecewise_network_routes_each_point_to_its_window():
    class Const(torch.nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c = c

        def forward(self, p):
            return torch.full((p.shape[0], 1), float(self.c)) + 0 * p[:, :1]
    model = WindowedModel([Const(0), Const(1), Const(2)], [0.0, 0.5, 0.75, 1.0])
    t = torch.tensor([0.9, 0.0, 0.5, 0.49, 0.75, 1.0, -0.1, 1.2])
    p = torch.stack([torch.zeros_like(t), t], dim=1)
    assert model(p).reshape(-1).tolist() == [2, 0, 1, 0, 2, 2, 0, 2]


def test_a_later_window_starts_from_the_previous_networks_prediction():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1)).double()
    pde = build_pde(window_config(compose_cfg(["pde=wave"]), 0.5, 1.0, None).pde)
    start_from_previous(pde, net, 0.5)
    pts = torch.rand(20, 2, dtype=torch.float64)
    at = pts.clone()
    at[:, 1] = 0.5
    with torch.no_grad():
        assert torch.equal(pde.initial_at(pts), net(at))
        h = 1e-6  # the initial velocity (wave is second order in time): central differences
        up, down = at.clone(), at.clone()
        up[:, 1] += h
        down[:, 1] -= h
        fd = (net(up) - net(down)) / (2 * h)
    torch.testing.assert_close(pde.initial_velocity_at(pts), fd, rtol=1e-7, atol=1e-9)
    assert torch.equal(pde.initial(pts[:, :1]), net(at))
    assert not InitialFromNetwork(net, 0.5, 1)(pts).requires_grad


def test_a_marching_run_trains_its_windows_in_turn(tmp_path):
    cfg = compose_cfg([*SMALL, "pde=heat", "trainer.time_windows=2", "trainer.steps=150",
                       "trainer.qn_steps=150"])
    metrics = run(cfg, RunPaths(tmp_path))
    assert metrics["status"] == "completed" and metrics["time_windows"] == 2
    manifest = json.loads((tmp_path / "windows.json").read_text())
    assert manifest == {"edges": [0.0, 0.5, 1.0], "folders": ["window_0", "window_1"]}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert [w["t"] for w in saved["windows"]] == [[0.0, 0.5], [0.5, 1.0]]
    for w in saved["windows"]:
        window = json.loads((tmp_path / w["folder"] / "metrics.json").read_text())
        assert window["error/l2_rel/u"] == w["error/l2_rel/u"] and window["steps"] == 300
    assert saved["steps"] == 600 and saved["error/l2_rel/u"] < 1e-2
    # The whole run reloads as the piecewise network; its error on the whole grid, computed
    # here against the problem's own grid, is the run's.
    model, rcfg = pinn.load_run(tmp_path)
    assert isinstance(model, WindowedModel) and rcfg.trainer.time_windows == 2
    assert (rcfg.pde.t_min, rcfg.pde.t_max) == (0.0, 1.0)
    full = build_pde(cfg.pde)
    grid = make_eval_grid(full, cfg.pde)
    again = grid_errors(predict_grid(model, grid), grid, full)
    assert again["l2_rel/u"] == pytest.approx(saved["error/l2_rel/u"], rel=1e-12)
    from pinn.evaluate import evaluate_run  # pinn.evaluate reads a marching run too
    evaluated = evaluate_run(tmp_path, tensorboard=False)
    assert evaluated["error/l2_rel/u"] == pytest.approx(saved["error/l2_rel/u"], rel=1e-12)
    assert (tmp_path / "evaluation.json").exists()
    # The second window learned from the first: its initial value is the first's prediction.
    first, _ = pinn.load_run(tmp_path / "window_0")
    second, wcfg = pinn.load_run(tmp_path / "window_1")
    assert (wcfg.pde.t_min, wcfg.pde.t_max) == (0.5, 1.0)
    x = torch.linspace(-1, 1, 33, dtype=torch.float64)[:, None]
    at = torch.cat([x, torch.full_like(x, 0.5)], dim=1)
    with torch.no_grad():
        gap = (second(at) - first(at)).abs().max().item()
    assert gap < 5e-3


@pytest.mark.parametrize("overrides,expected", [
    (["pde=poisson2d"], "pde poisson2d is steady (no t among its axes)"),
    (["pde=heat", "model.hard_initial=true"], "does not work with model.hard_initial=true"),
    (["pde=heat", "trainer.resume=auto"], "does not work with trainer.resume yet"),
    (["pde=cavity"], "pde cavity is steady"),
])
def test_what_marching_refuses(overrides, expected):
    cfg = compose_cfg([*overrides, "trainer.time_windows=3"])
    why = windows_refusal(cfg, build_pde(cfg.pde), distributed=False)
    assert why.startswith("trainer.time_windows=3") and expected in why
    assert windows_refusal(compose_cfg(["pde=heat", "trainer.time_windows=3"]),
                           build_pde(compose_cfg(["pde=heat"]).pde), distributed=True
                           ).endswith("torchrun yet; use trainer.time_windows=1")
    assert windows_refusal(compose_cfg(overrides), build_pde(cfg.pde), False) is None


def test_refusals_stop_the_command_line_without_a_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    p = run_cli(["pde=poisson2d", "trainer.time_windows=2", f"hydra.run.dir={run_dir}"],
                cwd=tmp_path)
    assert p.returncode == 2 and not run_dir.exists()
    assert p.stderr.strip().splitlines() == [
        "error: trainer.time_windows=2: pde poisson2d is steady (no t among its axes); time "
        "windows need a problem in time"]
    q = run_cli(["trainer.time_windows=0", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert q.returncode == 2 and not run_dir.exists()
    assert q.stderr.strip().splitlines()[0].startswith("error: trainer.time_windows=0")
