"""Checkpoints: one dataclass, written atomically, loaded without running pickled code."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict

import torch

from pinn.device import to_cpu

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """Everything needed to reload a model and, later, to resume training.

    Every field holds tensors, numbers, strings, lists or dicts of them, so that
    ``torch.load(weights_only=True)`` can read it.
    """

    model: Dict[str, torch.Tensor]
    step: int
    stage: str  # "adam", or the quasi-Newton method: one of pinn.optim.stages.QN_METHODS
    config_yaml: str
    # "bn_mode"; "training": the trainer's full state (optimizers, sampler, batch, counters).
    extra: Dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``: a
    reader sees the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask),
        # so that results are readable like every other file of the run.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(ckpt: Checkpoint, path: Path) -> None:
    """Write ``ckpt`` with every tensor on the CPU: a checkpoint holds nothing tied to the
    device it was trained on, so it loads and resumes anywhere."""
    # Fields by reference (dataclasses.asdict would deep-copy every tensor, the dense
    # inverse Hessian included); to_cpu copies only what lives on another device.
    data = to_cpu({f.name: getattr(ckpt, f.name) for f in fields(ckpt)})
    _atomic_write(Path(path), lambda f: torch.save(data, f))


def write_json(obj: Any, path: Path) -> None:
    """Atomic JSON write (metrics files)."""
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    _atomic_write(Path(path), lambda f: f.write(data))


class CheckpointError(RuntimeError):
    pass


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``: pickled code in a crafted file is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign or malicious files all land here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read safely: {first}") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a pinn checkpoint "
                              f"(format_version {FORMAT_VERSION} expected)")
    known = set(Checkpoint.__dataclass_fields__)
    return Checkpoint(**{k: v for k, v in data.items() if k in known})
