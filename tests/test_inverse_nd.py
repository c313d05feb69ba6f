"""Observations and inverse problems beyond (x, t): columns named by axis, the synthetic-data
generator on a grid in any dimension and at a reference file's nodes, each refusal, the data
term's value, sharding, and the recovery of a coefficient of the heat equation in 2-D."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pinn.data import DataError, load_observations, read_table, synthesize, write_table
from pinn.derivatives_nd import nd_derivatives  # noqa: F401  (the reference engine exists)
from pinn.distributed import shard_observations
from pinn.losses import loss_terms
from pinn.nn import build_model
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.sampling import Sampler
from pinn.train import build_trainer
from tests.conftest import compose_cfg, run_cli

HEAT2D = ["pde=heat2d", "precision=float64", "model.depth=2", "model.width=16",
          "trainer.progress=false", "sampler.n_interior=512", "sampler.n_initial=128",
          "sampler.n_boundary=128", "pde.eval_points={x: 21, y: 21, t: 11}",
          "log.figures=false"]
KAPPA = ["+pde.unknown.kappa={init: 0.2, transform: log}"]
COUNTS = {"x": 21, "y": 21, "t": 11}


def data_cfg(**kw):
    base = {"file": None, "columns": {}, "outputs": None, "noise_column": None,
            "weight_column": None, "allow_unobserved": False}
    return OmegaConf.create({**base, **kw})


@pytest.fixture(scope="module")
def heat2d():
    return build_pde(compose_cfg(["pde=heat2d"]).pde)


@pytest.fixture
def heat2d_file(tmp_path, heat2d):
    path = tmp_path / "heat2d.npz"
    write_table(path, synthesize(heat2d, 300, 0.0, seed=0, counts=COUNTS))
    return path


def test_synthetic_observations_in_three_columns_are_exact_distinct_and_seeded(heat2d):
    a = synthesize(heat2d, 500, 0.0, seed=3, counts=COUNTS)
    assert list(a) == ["x", "y", "t", "u"]
    exact = heat2d.exact_on({k: a[k] for k in ("x", "y", "t")})[..., 0]
    assert np.max(np.abs(a["u"] - exact)) < 1e-14
    nodes = set(zip(a["x"], a["y"], a["t"]))
    assert len(nodes) == 500  # distinct nodes of the grid
    grid = {k: set(np.linspace(0, 1, n)) for k, n in COUNTS.items()}
    assert all(set(a[k]) <= grid[k] for k in grid)
    b = synthesize(heat2d, 500, 0.0, seed=3, counts=COUNTS)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    noisy = synthesize(heat2d, 500, 0.05, seed=3, counts=COUNTS)
    assert np.array_equal(noisy["y"], a["y"])
    assert np.std(noisy["u"] - a["u"]) / np.std(a["u"]) == pytest.approx(0.05, rel=0.1)
    with pytest.raises(DataError, match=r"n=5000 is more than the 4851 nodes of the "
                                        r"21 x 21 x 11 grid \(nx, ny, nt\)"):
        synthesize(heat2d, 5000, 0.0, seed=0, counts=COUNTS)


def test_a_problem_with_only_a_reference_file_draws_at_its_nodes():
    cavity = build_pde(compose_cfg(["pde=cavity"]).pde)
    ref = cavity.reference_data
    cols = synthesize(cavity, 12, 0.0, seed=0, outputs=["u"])
    assert list(cols) == ["x", "y", "u"]
    rows = {(x, y): u for (x, y), u in zip(ref.points, ref.values[:, list(ref.outputs)
                                                                  .index("u")])}
    for x, y, u in zip(cols["x"], cols["y"], cols["u"]):
        assert rows[(x, y)] == u
    with pytest.raises(DataError, match="gives no values of p"):
        synthesize(cavity, 5, 0.0, seed=0, outputs=["p"])


def test_observations_are_read_by_axis_and_checked_against_the_domain(tmp_path, heat2d):
    cols = synthesize(heat2d, 40, 0.0, seed=1, counts=COUNTS)
    path = tmp_path / "o.csv"
    write_table(path, {"X": cols["x"], "y": cols["y"], "t": cols["t"], "u": cols["u"]})
    obs = load_observations(data_cfg(file=str(path), columns={"x": "X"}), heat2d)
    assert obs.axes == ("x", "y", "t") and obs.points.shape == (40, 3)
    assert np.array_equal(obs.points.numpy(), np.stack([cols["x"], cols["y"], cols["t"]], 1))
    assert torch.equal(obs.column("y")[:, 0], torch.as_tensor(cols["y"]))
    write_table(path, {"x": cols["x"], "t": cols["t"], "u": cols["u"]})
    with pytest.raises(DataError, match="no column 'y' for y"):
        load_observations(data_cfg(file=str(path)), heat2d)
    write_table(path, {"x": cols["x"], "y": cols["y"] + 1.5, "t": cols["t"], "u": cols["u"]})
    with pytest.raises(DataError, match=r"outside the domain.*y=.* is not in \[0, 1\]"):
        load_observations(data_cfg(file=str(path)), heat2d)
    with pytest.raises(DataError, match="data.columns.z: not a variable of heat2d: one of "
                                        "x, y, t, u"):
        load_observations(data_cfg(file=str(path), columns={"z": "y"}), heat2d)


def test_the_data_term_is_the_mean_square_misfit_at_the_observed_points(heat2d_file, heat2d):
    cfg = compose_cfg([*HEAT2D, f"data.file={heat2d_file}"])
    obs = load_observations(cfg.data, heat2d)
    torch.manual_seed(0)
    model = build_model(cfg, heat2d).double()
    batch = Sampler("sobol", 64, 16, 32, heat2d.domain, torch.float64,
                    torch.Generator().manual_seed(0)).sample()
    terms = loss_terms(model, heat2d, batch, data=obs)
    with torch.no_grad():
        want = (model(obs.points) - obs.values).square().mean()
    assert terms["data"].item() == pytest.approx(want.item(), rel=1e-14)


def test_observations_shard_into_slices_that_make_the_whole(heat2d_file, heat2d):
    obs = load_observations(data_cfg(file=str(heat2d_file)), heat2d)

    class Group:
        def __init__(self, rank):
            self.rank, self.world = rank, 3

    parts = [shard_observations(obs, Group(r)) for r in range(3)]
    assert torch.equal(torch.cat([p.points for p, _ in parts]), obs.points)
    assert torch.equal(torch.cat([p.values for p, _ in parts]), obs.values)
    assert sum(share for _, share in parts) == pytest.approx(1.0, rel=1e-15)
    assert all(p.axes == ("x", "y", "t") for p, _ in parts)


def test_the_diffusion_coefficient_of_the_heat_equation_in_2d_is_recovered(tmp_path,
                                                                           heat2d_file):
    """kappa = 0.05 from 300 clean observations on a 21 x 21 x 11 grid, starting at 0.2:
    within 0.2% after 300 Adam steps and 600 quasi-Newton iterations (measured: 3.2e-4 to
    6.5e-4 over seeds 0-2)."""
    cfg = compose_cfg([*HEAT2D, *KAPPA, f"data.file={heat2d_file}", "trainer.steps=300",
                       "trainer.qn_steps=600", "trainer.eval_every=100", "optim.lr=1e-2"])
    metrics = build_trainer(cfg, RunPaths(tmp_path / "run")).fit()
    assert metrics["status"] == "completed" and metrics["data_points"] == 300
    assert metrics["params/kappa/rel_error"] < 2e-3, metrics["params/kappa"]
    assert metrics["loss/data"] < 1e-5


def test_the_data_command_writes_columns_per_axis_and_refuses_stray_axes(tmp_path, capsys):
    from pinn.data import main

    p = run_cli(["pde=heat2d", "n=30", "nx=11", "ny=11", "nt=6", "out=obs.csv"],
                cwd=tmp_path, module="pinn.data")
    assert p.returncode == 0, p.stderr
    table = read_table(tmp_path / "obs.csv")
    assert list(table) == ["x", "y", "t", "u"] and table["y"].size == 30
    assert set(table["t"]) <= set(np.linspace(0, 1, 6))
    capsys.readouterr()
    for args, words in ((["pde=heat", "ny=5", "out=a.npz"], "ny: heat has no axis y; nodes "
                                                            "per axis: nx, nt"),
                        (["pde=heat2d", "nz=5", "out=a.npz"], "nz: heat2d has no axis z"),
                        (["pde=heat2d", "ny=1", "out=a.npz"], "ny=1 is not allowed")):
        assert main(args) == 2  # in process: the same code as the command's, without start-up
        err = capsys.readouterr().err
        assert words in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("a.npz"))
