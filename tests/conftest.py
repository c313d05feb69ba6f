"""Shared fixtures: the composed config, shrunk for speed, and helpers to run the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from pinn.config import CONFIG_DIR, register_configs

REPO = Path(__file__).resolve().parents[1]
register_configs()


def reference_dir() -> Path:
    """The public reference data: $PINN_REFERENCE_DATA, or ../shared/data/reference."""
    env = os.environ.get("PINN_REFERENCE_DATA")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data" / "reference"


def compose_cfg(overrides=()) -> DictConfig:
    """The run config as `python -m pinn.train` would compose it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(config_name="train", overrides=list(overrides))


def run_cli(args, cwd, module="pinn.train", timeout=300, env=None) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` in a subprocess with one torch thread."""
    e = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
