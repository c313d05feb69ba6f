"""The job side of a search: which metric a trial is judged by, and the reporter that hands the
trainer's evaluations to the study so that its pruner can stop the run.

A trial is an ordinary run (``python -m pinn.train ... trial=<number>``) under the optuna sweeper;
at every evaluation (``trainer.eval_every``) it reports the objective metric, and when the pruner
says so the trainer checkpoints and ends with status ``pruned``, like an interrupted run.
"""
from __future__ import annotations

import math
from typing import List, Mapping, Optional

from pinn.pdes.problem import PDE

LOSS_METRICS = ("loss/total", "loss/res", "loss/ic", "loss/bc")


def default_metric(pde: PDE) -> str:
    """The final relative L2 error of the first output where the problem has a reference (closed
    form or solver), else the final total loss."""
    if pde.reference_kind != "none":
        return f"error/l2_rel/{pde.outputs[0]}"
    return "loss/total"


def available_metrics(pde: PDE) -> List[str]:
    """The metrics a run of ``pde`` reports at each evaluation and at its end."""
    out = list(LOSS_METRICS)
    if pde.reference_kind != "none":
        for name in [*pde.outputs, *pde.derived]:
            out += [f"error/l2_rel/{name}", f"error/max_abs/{name}"]
    return out


def check_metric(metric: Optional[str], pde: PDE) -> str:
    """``metric`` (or the default) when runs of ``pde`` produce it.

    Raises:
        ValueError: one line naming the metric and those available.
    """
    if metric is None:
        return default_metric(pde)
    allowed = available_metrics(pde)
    if metric not in allowed:
        why = "" if pde.reference_kind != "none" else f" ({pde.name} has no reference solution)"
        raise ValueError(f"hydra.sweeper.metric={metric} is not a metric that runs of {pde.name} "
                         f"produce{why}: one of {', '.join(allowed)}")
    return metric


class TrialReporter:
    """Reports one metric of a run to an Optuna trial; :meth:`__call__` returns a one-line
    reason when the study's pruner stops the run."""

    def __init__(self, trial, metric: str, pruner_name: str):
        self.trial = trial
        self.metric = metric
        self.pruner_name = pruner_name
        self.number = trial.number

    def __call__(self, step: int, values: Mapping[str, float]) -> Optional[str]:
        value = values.get(self.metric)
        if value is None or not math.isfinite(value):
            return None
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            return (f"pruned by the {self.pruner_name} pruner at step {step}: "
                    f"{self.metric}={value:.4e}")
        return None


def reporter_from_hydra(trial_number: int, pde: PDE) -> TrialReporter:
    """The reporter of trial ``trial_number`` of the study that the run's sweeper configures
    (``hydra.sweeper``), opened from its storage.

    Raises:
        ValueError: the run is not a job of the optuna sweeper.
    """
    from hydra.core.hydra_config import HydraConfig

    from pinn.sweep.study import pruner_from, storage_for, trial_by_number

    try:
        hc = HydraConfig.get()
    except ValueError:
        hc = None
    sweeper = None if hc is None else hc.get("sweeper")
    if sweeper is None or "study_name" not in sweeper or not sweeper.get("study_name"):
        raise ValueError(f"trial={trial_number} is set by the optuna sweeper for its jobs "
                         "(python -m pinn.train -m hydra/sweeper=optuna ...); leave it unset")
    import optuna

    study = optuna.load_study(study_name=str(sweeper.study_name),
                              storage=storage_for(sweeper.storage, hc.sweep.dir),
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=pruner_from(sweeper))
    metric = check_metric(sweeper.metric, pde)
    pruner = sweeper.pruner.name if hasattr(sweeper.pruner, "name") else str(sweeper.pruner)
    return TrialReporter(trial_by_number(study, trial_number), metric, pruner)
