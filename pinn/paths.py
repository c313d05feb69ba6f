"""Every artifact of a run, by path, under its (Hydra) run folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:  # resolved config written by Hydra
        return self.root / ".hydra" / "config.yaml"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


def claim_run_dir(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ...: the first of them this call creates.

    The default run folder is named after the second a run starts, so two runs started in the
    same second (a script launching seeds side by side) would share it and overwrite each
    other's files. ``os.mkdir`` either creates a folder or fails because it exists, atomically,
    so each process gets a folder of its own. Used as the resolver ``pinn_run_dir`` in
    ``hydra.run.dir`` (configs/train.yaml); cached, so a process resolves it once.
    """
    path = candidate = Path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            k += 1
            candidate = path.with_name(f"{path.name}-{k}")


def register_run_dir_resolver() -> None:
    """Register :func:`claim_run_dir` as the OmegaConf resolver ``pinn_run_dir`` (once)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("pinn_run_dir"):
        OmegaConf.register_new_resolver("pinn_run_dir", claim_run_dir, use_cache=True)
