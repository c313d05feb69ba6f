"""The Optuna study of a search: where it is stored, its sampler and pruner, asking a trial with
its owner recorded, and recovery of the trials a killed search left running.

A study lives in a folder (by default ``outputs/sweeps/<study name>``), in Optuna's journal file
``study.journal``: an append-only log that several processes may write at once (file locks), on
one machine or on a cluster's shared file system, so parallel trials, SLURM jobs and a re-run of
the same command all see one study. ``sqlite:///...`` (or any SQLAlchemy URL) works as well.

Several searches may run trials of one study at once: each trial records the search that owns
it (pinn.sweep.heartbeat), and a RUNNING trial is failed and queued again only when that search
is provably gone, by exactly one of the searches that find it.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from enum import Enum
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import optuna
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from pinn.sweep.heartbeat import (CLAIM, HEARTBEAT, HEARTBEAT_GRACE, OWNER, Owner, stale_reason,
                                  this_process)

log = logging.getLogger(__name__)

JOURNAL = "study.journal"
SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STALE = "stale"  # user attribute of a trial a killed search left running: why (run again)
RERUN_OF = "rerun_of"  # user attribute of the trial that runs a stale one's parameters again


def default_study_name(arguments: Sequence[str], params: Mapping[str, str] = ()) -> str:
    """A name that the same command always gives: the problem and a hash of the overrides
    (order-free), so that re-running a command continues its study."""
    lines = sorted([*arguments, *(f"{k}={v}" for k, v in dict(params).items())])
    digest = hashlib.sha1("\n".join(lines).encode()).hexdigest()[:8]
    pde = next((a.split("=", 1)[1] for a in arguments if a.split("=", 1)[0] == "pde"), "burgers")
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', pde)}-{digest}"


def storage_for(storage: Optional[str], sweep_dir: str):
    """The Optuna storage: ``None`` -> the journal file in ``sweep_dir``; a URL with ``://`` ->
    that database; anything else -> a journal file at that path."""
    if storage and "://" in storage:
        return storage
    path = Path(storage) if storage else Path(sweep_dir) / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    # The open-lock works on network file systems too (SLURM jobs on a shared disk).
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def make_sampler(name: str, seed: Optional[int]) -> BaseSampler:
    """TPE (default), random, CMA-ES, Gaussian process or quasi-Monte Carlo, seeded."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    raise ValueError(f"hydra.sweeper.sampler={name} is not allowed: one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, startup_trials: int = 5, warmup_steps: int = 0,
                percentile: float = 25.0) -> BasePruner:
    """Median (Optuna's default), percentile, successive halving, Hyperband, or none.

    ``startup_trials``: trials that complete before the median or percentile pruner prunes
    anything; ``warmup_steps``: training steps before a trial can be pruned.
    """
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                           n_warmup_steps=warmup_steps)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(percentile, n_startup_trials=startup_trials,
                                               n_warmup_steps=warmup_steps)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_steps) if
                                                      warmup_steps else "auto")
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_steps))
    raise ValueError(f"hydra.sweeper.pruner={name} is not allowed: one of {', '.join(PRUNERS)}")


def _name(value) -> str:
    return value.name if isinstance(value, Enum) else str(value)


def pruner_from(sweeper_cfg) -> BasePruner:
    """The pruner that the sweeper's options (``hydra.sweeper``) configure."""
    return make_pruner(_name(sweeper_cfg.pruner), int(sweeper_cfg.pruner_startup_trials),
                       int(sweeper_cfg.pruner_warmup_steps), float(sweeper_cfg.pruner_percentile))


def recover_stale(study: optuna.Study, grace: float = HEARTBEAT_GRACE,
                  here: Optional[Owner] = None, now: Optional[float] = None) -> int:
    """Trials left RUNNING by a search that is gone (see pinn.sweep.heartbeat) are marked
    failed (user attribute ``stale``: why) and their parameters queued again, so each is run
    once more and none is lost; returns how many this call queued.

    Safe while other searches run trials of the study: a trial whose search may still be
    alive is left alone, and of two searches that find the same stale trial only the one whose
    write failed it queues it again."""
    from optuna.exceptions import UpdateFinishedTrialError

    here = here or this_process()
    now = time.time() if now is None else now
    storage = study._storage
    queued = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = stale_reason(t.user_attrs, t.datetime_start, now, grace, here)
        if why is None:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, STALE, why)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another search failed it first (and queued it), or it ended meanwhile
        if any(u.user_attrs.get(RERUN_OF) == t.number for u in study.get_trials(deepcopy=False)):
            continue
        study.enqueue_trial(t.params, user_attrs={RERUN_OF: t.number}, skip_if_exists=False)
        log.info(f"trial {t.number} is stale ({why}): queued to run again")
        queued += 1
    return queued


def ask(study: optuna.Study, distributions: Mapping[str, BaseDistribution],
        owner: Owner) -> optuna.Trial:
    """``study.ask(distributions)`` with ``owner`` recorded as the trial's owner: in the very
    journal entry that creates a trial, or, for a queued trial (a re-run), as a claim written
    before it is taken from the queue. So no other search ever sees a RUNNING trial of this
    one without a record of who runs it (see pinn.sweep.heartbeat)."""
    from optuna.exceptions import UpdateFinishedTrialError

    storage = study._storage
    # As Study.ask does: the sampler's per-thread cache of the trials is refreshed.
    study._thread_local.cached_all_trials = None
    trial_id = None
    for waiting in storage.get_all_trials(study._study_id, deepcopy=False,
                                          states=(TrialState.WAITING,)):
        try:
            storage.set_trial_user_attr(waiting._trial_id, f"{CLAIM}{owner.token}",
                                        {**owner.record(), "time": time.time()})
            if not storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):
                continue  # another search took it
        except UpdateFinishedTrialError:
            continue
        trial_id = waiting._trial_id
        storage.set_trial_user_attr(trial_id, OWNER, owner.record())
        storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
        break
    if trial_id is None:
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, user_attrs={OWNER: owner.record(), HEARTBEAT: time.time()})
        trial_id = storage.create_new_trial(study._study_id, template_trial=template)
    trial = optuna.Trial(study, trial_id)
    for name, distribution in distributions.items():
        trial._suggest(name, distribution)  # as Study.ask(fixed_distributions) does
    return trial


def _is_stale(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and bool(t.user_attrs.get(STALE))


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward ``n_trials``: completed, pruned and failed, not stale ones."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if not _is_stale(t))


def running_count(study: optuna.Study) -> int:
    """Trials running now, in this search and in any other on the study."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def trial_by_number(study: optuna.Study, number: int) -> optuna.Trial:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, trial_id)


def check_same_space(study: optuna.Study, params: Mapping[str, object]) -> Optional[str]:
    """A one-line reason when the stored study was searched over other parameters."""
    for t in study.get_trials(deepcopy=False):
        if t.distributions and set(t.distributions) != set(params):
            return (f"study {study.study_name} was searched over "
                    f"{', '.join(sorted(t.distributions))}, this command over "
                    f"{', '.join(sorted(params))}; give another hydra.sweeper.study_name")
        if t.distributions:
            for k, d in params.items():
                if t.distributions[k] != d:
                    return (f"study {study.study_name} searched {k} over "
                            f"{t.distributions[k]}, this command over {d}; give another "
                            "hydra.sweeper.study_name")
            break
    return None


def state_of(outcome: Mapping[str, object]) -> Tuple[TrialState, Optional[float]]:
    """The Optuna state and value of a job's outcome (what ``pinn.train`` returns)."""
    status = outcome.get("status")
    value = outcome.get("value")
    if status == "pruned":
        return TrialState.PRUNED, None
    if status == "completed" and isinstance(value, (int, float)) and value == value \
            and abs(value) != float("inf"):
        return TrialState.COMPLETE, float(value)
    return TrialState.FAIL, None
