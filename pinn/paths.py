"""Every artifact of a run, by path, under its (Hydra) run folder."""
from __future__ import annotations

import logging
import shutil
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
    k = 1
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            k += 1
            candidate = path.with_name(f"{path.name}-{k}")
        except FileNotFoundError:
            continue  # a refused run just removed the empty date folder: make it again


def remove_run_dir(path: Path) -> None:
    """Remove a run folder that holds nothing worth keeping (a run refused before training,
    Hydra's fresh folder of a resumed run), and the folders above it that this leaves empty
    (``outputs/<date>``, ``outputs``), never above the working directory. A folder holding
    anything besides Hydra's ``.hydra/`` and log files (an existing run named by
    ``hydra.run.dir``) is left alone."""
    path = Path(path).resolve()
    if path.is_dir() and any(p.name != ".hydra" and p.suffix != ".log" for p in path.iterdir()):
        return  # holds more than Hydra wrote at start-up: another run's, never removed
    shutil.rmtree(path, ignore_errors=True)
    stop = Path.cwd().resolve()
    parent = path.parent
    while stop in parent.parents:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent


def adopt_resumed_folder(fresh: Path, resumed: Path, step: int) -> None:
    """A resumed run writes into the folder it continues; Hydra made a fresh one for this
    process before the run knew. Keep its command line beside the run's own
    (``.hydra/overrides.resume-<step>.yaml``), point the log at the run's ``train.log``
    (appended), and remove the fresh folder."""
    fresh, resumed = Path(fresh).resolve(), Path(resumed).resolve()
    if fresh == resumed or not fresh.is_dir():
        return
    overrides = fresh / ".hydra" / "overrides.yaml"
    if overrides.is_file() and (resumed / ".hydra").is_dir():
        shutil.copyfile(overrides, resumed / ".hydra" / f"overrides.resume-{step}.yaml")
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if not isinstance(handler, logging.FileHandler):
                continue
            log = Path(handler.baseFilename)
            if fresh not in log.parents:
                continue
            logger.removeHandler(handler)
            handler.close()
            moved = logging.FileHandler(resumed / log.name, mode="a")
            moved.setFormatter(handler.formatter)
            moved.setLevel(handler.level)
            logger.addHandler(moved)
    remove_run_dir(fresh)


def register_run_dir_resolver() -> None:
    """Register :func:`claim_run_dir` as the OmegaConf resolver ``pinn_run_dir`` (once)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("pinn_run_dir"):
        OmegaConf.register_new_resolver("pinn_run_dir", claim_run_dir, use_cache=True)
