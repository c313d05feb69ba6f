"""Shared fixtures: the composed config, shrunk for speed, and helpers to run the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from pinn.config import CONFIG_DIR, register_configs

REPO = Path(__file__).resolve().parents[1]
register_configs()
# One torch thread in the test process, as in the CLI subprocesses: `make test` runs two
# workers on two cores, and spinning OpenMP threads collapse when a core is taken.
torch.set_num_threads(1)


def reference_dir() -> Path:
    """The public reference data: $PINN_REFERENCE_DATA, or ../shared/data/reference."""
    env = os.environ.get("PINN_REFERENCE_DATA")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data" / "reference"


def load_reference(relative: str) -> dict:
    """The variables of the ``.mat`` file at ``relative`` under :func:`reference_dir`; the test
    is skipped, with the path in the reason, where the file is absent."""
    sio = pytest.importorskip("scipy.io")
    path = reference_dir() / relative
    if not path.is_file():
        pytest.skip(
            f"reference data ../shared/data/reference not found; looked for {path} "
            "(set PINN_REFERENCE_DATA to the 'reference' folder to use another location)"
        )
    return sio.loadmat(str(path))


def load_raissi(name: str) -> tuple:
    """``(x, t, u)`` of ``raissi_pinns/<name>``: (Nx,), (Nt,), (Nt, Nx), time along rows (the
    file stores space along rows)."""
    data = load_reference(f"raissi_pinns/{name}")
    x, t, u = data["x"].ravel(), data["tt"].ravel(), data["uu"].T
    assert u.shape == (t.size, x.size)
    return x, t, u


def load_jaxpi(name: str) -> tuple:
    """``(x, t, u)`` of ``jaxpi/<name>`` on the periodic grid: (Nx,), (Nt,), (Nt, Nx), without
    the file's last column, which repeats the first (x = x_max)."""
    data = load_reference(f"jaxpi/{name}")
    x, t, u = data["x"].ravel(), data["t"].ravel(), data["usol"]
    assert u.shape == (t.size, x.size)
    np.testing.assert_array_equal(u[:, -1], u[:, 0])
    return x[:-1], t, u[:, :-1]


# Tests run a few steps each, too few to repay torch.compile (seconds per process), so they
# train eagerly unless they ask for compilation themselves; test_cli.py has one run with the
# default (compiled) setting, and tests/test_taylor.py checks the compiled code.
EAGER = "derivatives.compile=false"


def eager(overrides) -> list:
    """``overrides`` plus ``derivatives.compile=false`` unless they set it already."""
    overrides = list(overrides)
    if any(o.lstrip("+~").startswith("derivatives.compile=") for o in overrides):
        return overrides
    return [*overrides, EAGER]


def compose_cfg(overrides=()) -> DictConfig:
    """The run config as `python -m pinn.train` would compose it (without compilation unless
    ``overrides`` set ``derivatives.compile``)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(config_name="train", overrides=eager(overrides))


def _cli(args, module, env, defaults) -> tuple:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    if module == "pinn.train" and not defaults and "--help" not in args and "--cfg" not in args:
        args = eager(args)
    return [sys.executable, "-m", module, *args], e


def run_cli(args, cwd, module="pinn.train", timeout=300, env=None,
            defaults=False) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` in a subprocess with one torch thread (training
    without compilation unless ``args`` set ``derivatives.compile`` or ``defaults`` is true)."""
    command, e = _cli(args, module, env, defaults)
    return subprocess.run(command, cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=timeout)


def start_cli(args, cwd, module="pinn.train", env=None, defaults=False) -> subprocess.Popen:
    """:func:`run_cli` without waiting: the process, its stdout and stderr as text pipes."""
    command, e = _cli(args, module, env, defaults)
    return subprocess.Popen(command, cwd=cwd, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _default_dtype_kept():
    """torch's default dtype is process-wide: a test or module that changes it and does not
    restore it changes every later test (points drawn in float64, a float32 check passing on
    float64), so it is checked before and after every test."""
    assert torch.get_default_dtype() == torch.float32, \
        "torch's default dtype was left changed before this test (a module-level set_default_dtype?)"
    yield
    assert torch.get_default_dtype() == torch.float32, "this test left torch's default dtype changed"
