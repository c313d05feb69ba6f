"""``python -m pinn.train key=value ...``: compose the run's objects and train.

Hydra composes ``configs/train.yaml`` with the command-line overrides (typos and wrong types
stop here, before a run folder exists); the run folder is Hydra's output directory.
"""
from __future__ import annotations

if __name__ == "__main__":
    # A bad command line is refused before torch and the trainer are imported.
    from pinn.cli import check_before_imports
    from pinn.config import TrainConfig, register_configs
    from pinn.validation import validate

    register_configs()
    check_before_imports("train", TrainConfig, validate)

import io
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager, nullcontext, redirect_stderr
from enum import Enum
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pinn import distributed
from pinn.checkpoint import Checkpoint, CheckpointError, load_checkpoint, write_json
from pinn.evaluation import EvalGrid
from pinn.cli import check_command_line, quiet_closed_pipe
from pinn.config import CONFIG_DIR, TrainConfig, choice, load_saved_config, register_configs
from pinn.data import Observations, load_observations
from pinn.device import configure_tf32, resolve_device
from pinn.marching import march, windows_refusal
from pinn.precision import device_note
from pinn.logs import RunLogger, flat_hparams
from pinn.nn import build_model
from pinn.optim.gauss_newton import lm_config_error
from pinn.optim.stages import check_quasi_newton
from pinn.paths import RunPaths, adopt_resumed_folder, remove_run_dir
from pinn.pdes import build_pde
from pinn.pdes.problem import PDE
from pinn.pdes.options import check_run_options
from pinn.sweep.trial import TrialReporter, reporter_from_hydra
from pinn.trainer import Trainer
from pinn.validation import ConfigError, validate

register_configs()


def format_summary(metrics: dict, paths: RunPaths) -> str:
    """The end-of-run summary: errors, losses, speed and (BN networks) the divergence of the
    forward and predict paths. Everything else is in metrics.json."""
    shown = [k for k in sorted(metrics)
             if not k.startswith(("divergence/bn/", "events", "message", "stopped_by",
                                  "stopped_early", "status", "steps"))
             and not (k.startswith("divergence/") and "max_abs" in k)]
    lines = [f"run folder: {paths.root}", f"  {'status':<28} {run_status(metrics)}"]
    shown = [k for k in shown if k not in ("windows", "error_by_time")]
    for w in metrics.get("windows", []):  # a marching run (pinn.marching)
        errors = ", ".join(f"{k.split('/')[-1]} {v:.3e}" for k, v in w.items()
                           if k.startswith("error/l2_rel/"))
        lines.append(f"  window {w['window']} t in [{w['t'][0]:g}, {w['t'][1]:g}]: "
                     f"{w['status']}, {w.get('steps', 0)} steps{', ' + errors if errors else ''}"
                     f" ({w['folder']})")
    for k in shown:
        v = metrics[k]
        lines.append(f"  {k:<28} {v:.4e}" if isinstance(v, float) else f"  {k:<28} {v}")
    for event in metrics.get("events", []):
        lines.append(f"  event at step {event['step']}: {event['event']}")
    lines.append(f"metrics: {paths.metrics}")
    logdir = paths.root if metrics.get("windows") else paths.tensorboard  # one run per window
    lines.append(f"TensorBoard: tensorboard --logdir {logdir}")
    return "\n".join(lines)


def run_status(metrics: dict) -> str:
    """What ran, in one line: the status, the steps done of the steps asked, and why training
    ended early when it did ("completed, stopped early at step 30 of 1000: time budget ...")."""
    status, done = metrics["status"], metrics.get("steps")
    asked = metrics.get("steps_asked")
    if status == "completed" and metrics.get("stopped_early"):
        return f"{status}, stopped early at step {done} of {asked}: {metrics['stopped_early']}"
    if asked is not None and done != asked:
        return f"{status} at step {done} of {asked}"
    return f"{status}: {done} steps" if status == "completed" else f"{status} at step {done}"


def build_trainer(cfg: DictConfig, paths: RunPaths, resume_step: Optional[int] = None,
                  device: Optional[torch.device] = None,
                  data: Optional[Observations] = None, pde: Optional[PDE] = None,
                  model: Optional[torch.nn.Module] = None,
                  grid: Optional[EvalGrid] = None) -> Trainer:
    """Problem, network, logger and trainer of one run, writing into ``paths``; the network
    on ``device`` (default: as ``cfg.device`` resolves); ``data``: the observations of
    ``cfg.data.file`` (read here when not given). ``pde``, ``model`` and ``grid`` are built
    from ``cfg`` unless given (a window of a marching run, :mod:`pinn.marching`)."""
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = resolve_device(cfg.device) if device is None else device
    configure_tf32(device, cfg.tf32)
    pde = build_pde(cfg.pde) if pde is None else pde
    model = (build_model(cfg, pde) if model is None else model).to(device)
    if data is None:
        data = load_observations(cfg.data, pde)
    writer = distributed.is_writer()  # several ranks: rank 0 alone writes the run folder
    logger = RunLogger(paths, tensorboard=cfg.log.tensorboard and writer,
                       progress=cfg.trainer.progress and writer,
                       total_steps=cfg.trainer.steps + cfg.trainer.qn_steps,
                       purge_step=resume_step)
    return Trainer(cfg, model, pde, paths, logger, grid=grid, data=data)


# Keys that fix the network (its shape, precision and BN mode): a checkpoint fits only a
# config that agrees on them. (The quasi-Newton method may change: pinn.optim.stages converts.)
SHAPE_KEYS = ("model.depth", "model.width", "model.activation", "model.norm", "model.periodic",
              "model.harmonics", "model.fourier_features", "model.fourier_sigma",
              "model.hard_initial", "model.hard_boundary", "pde.outputs", "precision",
              "bn.mode")
# Keys that may differ between a run and its continuation under trainer.resume=auto.
FREE_KEYS = ("trainer", "log", "device", "tf32", "distributed")


def _flat(cfg: DictConfig) -> Dict[str, object]:
    c = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(c, "")
    return out


def shape_differences(cfg: DictConfig, saved: DictConfig) -> List[str]:
    """The shape keys on which a saved run's config and this one disagree, as 'key: a -> b';
    also the learned coefficients (``pde.unknown``: their names are parameters)."""
    a, b = _flat(saved), _flat(cfg)
    out = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys())
           if k.startswith(SHAPE_KEYS) and a.get(k) != b.get(k)]
    names = [sorted((c.get("pde", {}).get("unknown") or {}).keys()) for c in (saved, cfg)]
    if names[0] != names[1]:
        out.append(f"pde.unknown: {names[0]} -> {names[1]}")
    return out


def _saved_config(ckpt: Checkpoint) -> DictConfig:
    return load_saved_config(ckpt.config_yaml)


def find_resume_run(cfg: DictConfig, this_run: Path) -> Path:
    """``trainer.resume`` as a run folder; ``auto`` picks the newest run under ./outputs whose
    config equals this one apart from trainer.* and log.*."""
    value = str(cfg.trainer.resume)
    if value != "auto":
        return Path(value)
    mine = {k: v for k, v in _flat(cfg).items() if not k.startswith(FREE_KEYS)}
    candidates = sorted(Path("outputs").glob("**/checkpoints/last.pt"),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    for last in candidates:
        run_dir = last.parent.parent
        if run_dir.resolve() == this_run.resolve():
            continue
        try:
            saved = _flat(_saved_config(load_checkpoint(last)))
        except CheckpointError:
            continue
        if {k: v for k, v in saved.items() if not k.startswith(FREE_KEYS)} == mine:
            return run_dir
    raise ConfigError(f"trainer.resume=auto found no run with this config under "
                      f"{Path('outputs').resolve()} (checked {len(candidates)} checkpoints)")


def preflight(paths: RunPaths, min_free_mb: float = 50.0) -> None:
    """Fail before training if the run folder cannot take checkpoints."""
    try:
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        probe = paths.checkpoints / ".write-test"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"the run folder {paths.root} is not writable: {e.strerror or e}") from None
    free_mb = shutil.disk_usage(paths.root).free / 2**20
    if free_mb < min_free_mb:
        raise ConfigError(f"the run folder {paths.root} has {free_mb:.0f} MB free; at least "
                          f"{min_free_mb:.0f} MB are needed for checkpoints and logs")


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """SIGINT and SIGTERM ask the trainer to checkpoint and stop after the current step."""
    def handler(signum, frame):
        trainer.stop_requested = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run(cfg: DictConfig, paths: RunPaths, resume: Optional[Checkpoint] = None,
        device: Optional[torch.device] = None, reporter: Optional[TrialReporter] = None,
        data: Optional[Observations] = None, **parts) -> dict:
    """Train one run into ``paths`` (continuing ``resume`` if given); returns its metrics.
    ``reporter``: a search's trial, told the objective at each evaluation (it may prune);
    ``parts``: ``pde``, ``model``, ``grid`` (see :func:`build_trainer`)."""
    if int(cfg.trainer.get("time_windows", 1)) > 1:
        return run_marching(cfg, paths, device)
    trainer = build_trainer(cfg, paths, resume_step=resume.step if resume else None,
                            device=device, data=data, **parts)
    trainer.monitor = reporter
    if resume is not None:
        trainer.load_training_state(resume.extra["training"])
    note = device_note(trainer.device, cfg.precision)  # float64 on a slow-float64 GPU
    if note is not None and distributed.is_writer():
        trainer.event_log.add(trainer.step, note)
        print(f"note: {note}", file=sys.stderr)
    with stop_on_signals(trainer), trainer.logger.redirect_logging():
        metrics = trainer.fit()
    if reporter is not None:
        metrics["trial"] = reporter.number
        metrics["objective"] = reporter.metric
    if not distributed.is_writer():
        return metrics
    view = hparam_view(cfg, *_command_line())
    # Ticked in TensorBoard: the command-line keys and the problem, at least five columns.
    shown = max(5, list(view).index("pde.name") + 1)
    trainer.logger.finish(view, metrics, summary=format_summary(metrics, paths), shown=shown)
    return metrics


def run_marching(cfg: DictConfig, paths: RunPaths, device: Optional[torch.device]) -> dict:
    """A run of ``trainer.time_windows`` windows (:mod:`pinn.marching`): each an ordinary run in
    its sub-folder; the whole run's metrics.json in ``paths``."""
    device = resolve_device(cfg.device) if device is None else device

    def window(wcfg, wpaths, pde, model, grid):
        wpaths.root.mkdir(parents=True, exist_ok=True)
        return run(wcfg, wpaths, device=device, pde=pde, model=model, grid=grid)

    metrics = march(cfg, paths, window, build_pde, build_model, device)
    write_json(metrics, paths.metrics)
    if paths.checkpoints.is_dir() and not any(paths.checkpoints.iterdir()):
        paths.checkpoints.rmdir()  # the windows hold the checkpoints
    return metrics


# The columns of TensorBoard's HParams table, in this order after the keys set on the command
# line (in a sweep, the keys that vary): the problem, the network, the recipe.
HPARAM_KEYS = ("pde.name", "model.depth", "model.width", "model.activation", "model.norm",
               "precision", "optim.lr", "trainer.steps", "optim.qn", "trainer.qn_steps",
               "trainer.max_minutes", "sampler.n_interior", "sampler.adaptive",
               "sampler.resample_every", "loss.balance", "seed", "device")
BN_KEYS = ("bn.mode", "bn.freeze_at", "bn.momentum", "bn.calibrate_at_end")
GROUP_KEYS = {"pde": "pde.name"}  # a group chosen on the command line -> the key that names it


def _command_line() -> tuple:
    """The keys of this job's command-line overrides (Hydra's task overrides) and the chosen
    option of every config group."""
    try:
        hc = HydraConfig.get()
    except ValueError:  # not under Hydra (tests, the Python API)
        return [], {}
    keys = [o.split("=", 1)[0].lstrip("+~") for o in hc.overrides.task]
    return keys, {k: str(v) for k, v in hc.runtime.choices.items()}


def hparam_view(cfg: DictConfig, first: List[str] = (),
                choices: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """The HParams of a run: the keys in ``first`` (those set on the command line; a config
    group as its chosen option), then :data:`HPARAM_KEYS`, then the BN keys when the network
    has BN; enums as their names, lists and dicts as text."""
    choices = choices or {}
    keys: List[str] = []
    has_bn = choice(cfg.model.norm) == "batch"
    for k in [*first, *HPARAM_KEYS, *(BN_KEYS if has_bn else ())]:
        k = GROUP_KEYS.get(k, k)
        if k.startswith("hydra") or k in keys:
            continue
        keys.append(k)
    values = {k: choices[k] if k in choices else OmegaConf.select(cfg, k, default=None)
              for k in keys}
    return flat_hparams({k: str(OmegaConf.to_container(v, resolve=True, enum_to_str=True))
                         if OmegaConf.is_config(v) else choice(v) if isinstance(v, Enum) else v
                         for k, v in values.items()})


EXIT_CODES = {"completed": 0, "failed": 1, "diverged": 3, "pruned": 0, "SIGINT": 130,
              "SIGTERM": 143}


def job_outcome(metrics: dict, metric: Optional[str]) -> dict:
    """What a job returns to its sweeper: status, the objective ``metric`` (default: the first
    relative L2 error, else the total loss), steps and wall time."""
    if metric is None:
        metric = next((k for k in metrics if k.startswith("error/l2_rel")), "loss/total")
    value = metrics.get(metric)
    return {"status": metrics["status"], "metric": metric,
            "value": float(value) if isinstance(value, (int, float)) else float("nan"),
            "steps": metrics.get("steps"), "wall_time_s": metrics.get("wall_time_s"),
            "message": metrics.get("message")}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> dict:
    """Train one run; returns :func:`job_outcome` (a sweeper reads it). A single run exits
    non-zero unless it completed; a job of a multirun returns instead, so the others go on."""
    hydra_cfg = HydraConfig.get()
    paths = RunPaths(Path(hydra_cfg.runtime.output_dir))
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    resume = reporter = None
    ranks = distributed.launched()
    # A search's trial prints nothing of its own: trials run side by side would interleave
    # their summaries, and the sweeper logs one line per trial (the summary is in metrics.json
    # and TensorBoard's text tab).
    in_search = multirun and cfg.get("trial") is not None
    try:
        validate(cfg)
        # Decided once; "cuda" without a GPU stops here; under torchrun one GPU per rank.
        device = (distributed.rank_device(cfg.device, distributed.env_local_rank(),
                                          distributed.env_world()) if ranks
                  else resolve_device(cfg.device))
        pde = build_pde(cfg.pde)
        check_run_options(cfg, pde)
        marching = windows_refusal(cfg, pde, bool(ranks))
        if marching:
            raise ConfigError(marching)
        data = load_observations(cfg.data, pde)  # every refusal here, before any training
        if cfg.trial is not None:
            reporter = reporter_from_hydra(cfg.trial, pde)
        network = build_model(cfg, pde)  # refuses what cannot be built, before any output
        if cfg.trainer.qn_steps > 0:
            check_quasi_newton(cfg.optim, list(network.parameters()))
            if choice(cfg.optim.qn) == "lm" and lm_config_error(cfg):
                raise ValueError(lm_config_error(cfg))
        if cfg.trainer.resume:
            paths = RunPaths(find_resume_run(cfg, paths.root))
            resume = load_checkpoint(paths.last_checkpoint)
            for stale in paths.checkpoints.glob(".last.pt.*.tmp"):  # from a killed write
                stale.unlink()
            if "training" not in resume.extra:
                raise CheckpointError(f"{paths.last_checkpoint} holds no training state")
            diff = shape_differences(cfg, _saved_config(resume))
            if diff:
                raise ConfigError(f"trainer.resume={cfg.trainer.resume}: the run's network "
                                  f"differs in {'; '.join(diff)}; resume with the run's "
                                  "values or start a new run")
        if ranks:
            distributed.check_sets(cfg, pde, data)
        if distributed.env_rank() == 0:
            preflight(paths)
    except (ConfigError, ValueError, CheckpointError) as e:
        # A user mistake: one line, no traceback, and no half-written run folder left behind.
        # Several ranks meet the same mistake: rank 0 alone says it; in a search, the sweeper's
        # line on how the trial ended.
        if distributed.env_rank() == 0 and not in_search:
            print(f"error: {e}", file=sys.stderr)
        if distributed.env_rank() == 0:  # the others wrote no folder
            remove_run_dir(Path(hydra_cfg.runtime.output_dir))
        if multirun:
            return {"status": "failed", "message": str(e), "value": float("nan")}
        distributed.exit_refused(2)
    if ranks:
        # Every rank joins the group and adopts rank 0's run folder (the others' own Hydra
        # folders are not written, see distributed_overrides).
        distributed.start(cfg.device, cfg.distributed.timeout_s)
        paths = RunPaths(Path(distributed.from_rank0(str(paths.root))))
    if resume is not None and distributed.is_writer():
        adopt_resumed_folder(Path(hydra_cfg.runtime.output_dir), paths.root, resume.step)
        print(f"resuming {paths.root} from step {resume.step}", file=sys.stderr)
    try:
        metrics = run(cfg, paths, resume, device, reporter, data)
    except OSError as e:
        print(f"error: cannot write to {paths.root}: {e.strerror or e}; the last complete "
              f"checkpoint is {paths.last_checkpoint}", file=sys.stderr)
        sys.exit(1)
    finally:
        if ranks:
            distributed.stop()
    if ranks and metrics["status"] == "failed" and metrics.get("message"):
        # A lost rank: every survivor knows; the lowest one says it, once.
        if distributed.env_rank() == min(set(range(distributed.env_world()))
                                         - set(metrics.get("lost_ranks", []))):
            print(f"error: {metrics['message']}", file=sys.stderr)
        sys.exit(EXIT_CODES["failed"])
    if distributed.env_rank() != 0:  # rank 0 reports; the others exit as it does
        code = EXIT_CODES.get(metrics.get("stopped_by", metrics["status"]), 1)
        if metrics["status"] != "completed" and code:
            sys.exit(code)
        return job_outcome(metrics, None)
    status = metrics["status"]
    if in_search:
        return job_outcome(metrics, reporter.metric)
    print(format_summary(metrics, paths))
    if status != "completed":
        print(metrics.get("message", status), file=sys.stderr)
        if status == "interrupted" and metrics.get("windows"):
            print("a marching run cannot be resumed yet (trainer.time_windows); its finished "
                  f"windows are in {paths.root}", file=sys.stderr)
        elif status == "interrupted":
            print(f"resume with: python -m pinn.train trainer.resume={paths.root} "
                  "(plus the overrides of the original command)", file=sys.stderr)
        # In a sweep a failed job is reported in its metrics.json; the other jobs go on.
        if not multirun and EXIT_CODES.get(metrics.get("stopped_by", status), 1):
            sys.exit(EXIT_CODES.get(metrics.get("stopped_by", status), 1))
    return job_outcome(metrics, reporter.metric if reporter else None)


def distributed_overrides(argv: List[str]) -> List[str]:
    """Under torchrun, the command line of a rank other than 0: Hydra writes nothing (rank 0
    writes the run folder) and its logging stays quiet. A search under torchrun is refused
    (each trial would be one rank's)."""
    if any(a in ("-m", "--multirun") for a in argv):
        if distributed.env_rank() == 0:
            print("error: a search or multirun (-m) cannot run under torchrun; run the search "
                  "with one process per trial (see docs/distributed.md)",
                  file=sys.stderr)
        distributed.exit_refused(2)
    if distributed.env_rank() == 0:
        return argv
    # Hydra's run folder must exist; the system's temporary folder does, and nothing is written
    # into it (no .hydra folder, no log file).
    return [*argv, f"hydra.run.dir={tempfile.gettempdir()}", "hydra.output_subdir=null",
            "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


if __name__ == "__main__":
    if distributed.launched():
        sys.argv[1:] = distributed_overrides(sys.argv[1:])
    with quiet_closed_pipe():
        if distributed.launched():
            # One line per mistake, before any output; rank 0 alone says it (a single process
            # was checked at the top of this file).
            try:
                with redirect_stderr(io.StringIO()) if distributed.env_rank() else nullcontext():
                    check_command_line("train", TrainConfig)
            except SystemExit as e:
                if e.code:
                    distributed.exit_refused(e.code)
                raise
        main()
