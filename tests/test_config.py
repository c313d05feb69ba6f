"""Config errors end with one clear line, a non-zero exit and no run folder."""
import pytest

from pinn.config import ConfigError, validate
from tests.conftest import REPO, compose_cfg, run_cli


@pytest.mark.parametrize("override, expected", [
    ("model.widht=3", "Key 'widht' not in 'ModelConfig'"),
    ("model.width=abc", "could not be converted to Integer"),
    ("pde=burger", "Could not find 'pde/burger'"),
    ("model.activation=relu6", "Invalid value 'relu6', expected one of [tanh, gelu, sin, silu]"),
    ("model.width=-4", "model.width=-4 is not allowed: an integer >= 1"),
    ("optim.lr=0", "optim.lr=0.0 is not allowed: a finite number > 0"),
    ("pde.x_max=-2", "pde.x_max=-2.0 is not allowed"),
])
def test_bad_override_fails_cleanly(tmp_path, override, expected):
    run_dir = tmp_path / "run"
    p = run_cli([override, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode != 0
    assert expected in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert not run_dir.exists()


def test_available_pde_options_are_listed(tmp_path):
    p = run_cli(["pde=burger"], cwd=tmp_path)
    assert "burgers" in p.stderr and "heat" in p.stderr


def test_cfg_job_and_help(tmp_path):
    p = run_cli(["--cfg", "job", "model.width=7"], cwd=tmp_path)
    assert p.returncode == 0 and "width: 7" in p.stdout
    p = run_cli(["--help"], cwd=tmp_path)
    assert p.returncode == 0 and "pde: burgers, heat" in p.stdout
    assert not (tmp_path / "outputs").exists()


def test_validate_names_the_key():
    cfg = compose_cfg(["sampler.n_interior=0"])
    with pytest.raises(ConfigError, match=r"^sampler.n_interior=0 is not allowed"):
        validate(cfg)
    validate(compose_cfg())  # the defaults are valid
