"""``python -m pinn.train key=value ...``: compose the run's objects and train.

Hydra composes ``configs/train.yaml`` with the command-line overrides (typos and wrong types
stop here, before a run folder exists); the run folder is Hydra's output directory.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pinn.config import CONFIG_DIR, ConfigError, register_configs, validate
from pinn.logs import RunLogger, flat_hparams
from pinn.nn import build_model
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.trainer import Trainer

register_configs()


def format_summary(metrics: dict, paths: RunPaths) -> str:
    """The end-of-run summary: errors, losses, speed and (BN networks) the divergence of the
    forward and predict paths. Everything else is in metrics.json."""
    shown = [k for k in sorted(metrics)
             if not k.startswith(("divergence/bn/", "bn_events"))
             and not (k.startswith("divergence/") and "max_abs" in k)]
    lines = [f"run folder: {paths.root}"]
    for k in shown:
        v = metrics[k]
        lines.append(f"  {k:<28} {v:.4e}" if isinstance(v, float) else f"  {k:<28} {v}")
    for event in metrics.get("bn_events", []):
        lines.append(f"  bn event at step {event['step']}: {event['event']}")
    lines.append(f"metrics: {paths.metrics}")
    lines.append(f"TensorBoard: tensorboard --logdir {paths.tensorboard}")
    return "\n".join(lines)


def build_trainer(cfg: DictConfig, paths: RunPaths) -> Trainer:
    """Problem, network, logger and trainer of one run, writing into ``paths``."""
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde.n_out)
    logger = RunLogger(paths, tensorboard=cfg.log.tensorboard, progress=cfg.trainer.progress,
                       total_steps=cfg.trainer.steps + cfg.trainer.lbfgs_steps)
    return Trainer(cfg, model, pde, paths, logger)


def run(cfg: DictConfig, paths: RunPaths) -> dict:
    """Train one run into ``paths``; returns its final metrics."""
    trainer = build_trainer(cfg, paths)
    metrics = trainer.fit()
    trainer.logger.finish(flat_hparams(_hparam_view(cfg)), metrics)
    return metrics


def _hparam_view(cfg: DictConfig) -> dict:
    c = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return {k: c[k] for k in ("model", "pde", "optim", "sampler", "trainer", "bn", "loss",
                               "precision", "seed")}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    paths = RunPaths(Path(HydraConfig.get().runtime.output_dir))
    try:
        validate(cfg)
        build_pde(cfg.pde)
    except (ConfigError, ValueError) as e:
        # A user mistake: one line, no traceback, and no half-written run folder left behind.
        print(f"error: {e}", file=sys.stderr)
        shutil.rmtree(paths.root, ignore_errors=True)
        sys.exit(2)
    metrics = run(cfg, paths)
    print(format_summary(metrics, paths))
    first_error = next((v for k, v in metrics.items() if k.startswith("error/l2_rel")), None)
    return float(first_error if first_error is not None else metrics["loss/total"])


if __name__ == "__main__":
    main()
