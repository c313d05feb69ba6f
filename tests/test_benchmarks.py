"""The benchmark scripts a user runs by hand: their refusals are one line; the 2-D Taylor step
runs small."""
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, reference_dir, run_cli

SCRIPT = str(REPO / "benchmarks" / "check_burgers_run.py")
SMALL = ["model.depth=2", "model.width=8", "sampler.n_interior=64", "sampler.n_initial=16",
         "sampler.n_boundary=16", "trainer.steps=2", "trainer.qn_steps=0",
         "trainer.progress=false", "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false"]


@pytest.fixture(scope="module")
def burgers_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("check") / "run"
    p = run_cli([*SMALL, f"hydra.run.dir={run}"], cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    return run


def check(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_the_burgers_check_without_the_published_file_says_where_it_comes_from(burgers_run,
                                                                               tmp_path):
    p = check(burgers_run, tmp_path / "burgers_shock.mat")
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'burgers_shock.mat'} not found")
    assert "maziarraissi/PINNs" in line and "--help" in line
    assert "curl -LO https://github.com/maziarraissi/PINNs/raw/HEAD/appendix/Data/" \
           "burgers_shock.mat" in check("--help").stdout


def test_the_burgers_check_refuses_a_folder_that_is_not_a_run(tmp_path):
    mat = tmp_path / "burgers_shock.mat"
    mat.write_bytes(b"")
    p = check(tmp_path / "nowhere", mat)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'} is not a finished run folder (no metrics.json)"]


def test_the_burgers_check_with_the_published_file(burgers_run):
    mat = reference_dir() / "raissi_pinns" / "burgers_shock.mat"
    if not mat.is_file():
        pytest.skip(f"the published Burgers solution is not here ({mat})")
    p = check(burgers_run, mat)
    assert p.returncode == 0, p.stderr
    first, second = p.stdout.strip().splitlines()
    ours = float(first.rsplit(" ", 1)[1])
    theirs = float(second.rsplit(" ", 1)[1])
    assert first.startswith("relative L2 vs burgers_shock.mat (256 x 100 grid)")
    assert ours == pytest.approx(theirs, rel=0.2)  # two grids, one function


@pytest.mark.parametrize("case", ["kovasznay", "kdv", "kuramoto_sivashinsky"])
def test_the_taylor_step_beyond_x_t_runs_and_agrees_with_autograd(tmp_path, case):
    """benchmarks/taylor_nd.py in a few small eager steps (2-D Navier-Stokes fields; the KdV
    and Kuramoto-Sivashinsky residuals with Adam): a row per engine, the same first parameter
    gradient from both."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("taylor_nd",
                                                  REPO / "benchmarks" / "taylor_nd.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "nd.json"
    threads = str(torch.get_num_threads())  # the script sets them for the process
    assert script.main(["--case", case, "--n", "64", "--reps", "2", "--warmup", "1",
                        "--dtypes", "float64", "--engines", "autograd,taylor", "--threads",
                        threads, "--json", str(out)]) == 0
    result = json.loads(out.read_text())["float64"]
    assert set(result) == {"autograd", "taylor"}
    assert result["taylor"]["grad_rel_diff"] <= 1e-12
