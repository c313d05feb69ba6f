"""The configs travel with an installed wheel, not only with a checkout."""
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-w", str(out / "dist"), str(REPO)], capture_output=True, text=True)
    if p.returncode != 0 and "hatchling" in p.stderr:
        pytest.skip("hatchling is not installed in this environment (pip install .[test])")
    assert p.returncode == 0, p.stderr[-2000:]
    (whl,) = (out / "dist").glob("pinn-*.whl")
    site = out / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target",
                        str(site), str(whl)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    return site


def test_wheel_contains_and_finds_its_configs(wheel_site, tmp_path):
    assert (wheel_site / "pinn" / "conf" / "train.yaml").is_file()
    env = {"PYTHONPATH": str(wheel_site)}
    code = "import pinn, pinn.config as c; print(pinn.__file__); print(c.CONFIG_DIR)"
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert str(wheel_site) in p.stdout.splitlines()[0]
    assert p.stdout.splitlines()[1] == str(wheel_site / "pinn" / "conf")
    run_dir = tmp_path / "run"
    p = run_cli(["pde=heat", "trainer.steps=3", "trainer.qn_steps=0", "trainer.progress=false", "sampler.n_interior=32",
                 "pde.eval_nx=8", "pde.eval_nt=4", "log.figures=false",
                 f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (run_dir / "metrics.json").is_file()
