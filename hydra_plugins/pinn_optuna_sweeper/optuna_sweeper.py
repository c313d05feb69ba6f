"""The optuna sweeper: keeps ``n_jobs`` trials running (each asked from the study when a slot
frees), launches each as a Hydra job with the configured launcher, and tells the study how it
ended."""
from __future__ import annotations

import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

SWEEPS_DIR = "outputs/sweeps"
LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher",
                    "hydra_plugins.hydra_joblib_launcher",
                    "hydra_plugins.hydra_submitit_launcher")


def _name(value: Any) -> str:
    return value.name if isinstance(value, Enum) else str(value)


class OptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        self.options = {k: _name(v) if isinstance(v, Enum) else v for k, v in options.items()}
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    # -- before the first trial ------------------------------------------------------------
    def _hydra_override(self, key: str, value: str) -> None:
        """Set a hydra key on the master config and in the overrides every job recomposes."""
        with read_write(self.config.hydra), open_dict(self.config.hydra):
            OmegaConf.update(self.config, key, value, merge=False)
            lines = [o for o in self.config.hydra.overrides.hydra
                     if not o.startswith(f"{key}=")]
            self.config.hydra.overrides.hydra = [*lines, f"{key}={value}"]

    def _user_set(self, key: str) -> bool:
        return any(o.split("=", 1)[0].lstrip("+~") == key
                   for o in self.config.hydra.overrides.hydra)

    def _launcher(self, n_jobs: int):
        # The launchers log every job's command line; the search logs one line per trial.
        for name in LAUNCHER_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=self.task_function,
            config=self.config)
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        if n_jobs > 1 and isinstance(launcher, BasicLauncher):
            # The basic launcher runs jobs one after another: n_jobs at a time need processes.
            from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

            launcher = JoblibLauncher(n_jobs=n_jobs, backend=None, prefer="processes",
                                      require=None, verbose=0, timeout=None,
                                      pre_dispatch="2*n_jobs", batch_size="auto",
                                      temp_folder=None, max_nbytes=None, mmap_mode="r")
            launcher.setup(hydra_context=self.hydra_context, task_function=self.task_function,
                           config=self.config)
            log.info(f"{n_jobs} trials at a time, each in its own process (joblib launcher)")
        return launcher

    def _check_metric(self, space, arguments: Sequence[str]) -> str:
        from pinn.pdes import build_pde
        from pinn.sweep.trial import check_metric

        first = self.hydra_context.config_loader.load_sweep_config(
            self.config, space.fixed + [f"{k}={_first(d)}" for k, d in space.params.items()])
        return check_metric(self.options.get("metric"), build_pde(first.pde))

    # -- the search ------------------------------------------------------------------------
    def sweep(self, arguments: List[str]) -> Any:
        import optuna

        from pinn.sweep.heartbeat import (HEARTBEAT_GRACE, HEARTBEAT_INTERVAL, Heartbeat,
                                          this_process)
        from pinn.sweep.space import describe, parse_search_space
        from pinn.sweep.study import (ask, check_same_space, default_study_name, finished_count,
                                      make_sampler, pruner_from, recover_stale, running_count,
                                      state_of, storage_for)

        o = self.options
        params = dict(o.get("params") or {})
        space = parse_search_space(arguments, params)
        metric = self._check_metric(space, arguments)
        name = o.get("study_name") or default_study_name(arguments, params)
        if not self._user_set("hydra.sweep.dir"):
            self._hydra_override("hydra.sweep.dir", f"{SWEEPS_DIR}/{name}")
        self._hydra_override("hydra.sweeper.study_name", name)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = storage_for(o.get("storage"), str(sweep_dir))
        direction = o.get("direction", "minimize")
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search logs its own lines
        study = optuna.create_study(
            study_name=name, storage=storage, load_if_exists=True, direction=direction,
            sampler=make_sampler(o.get("sampler", "tpe"), o.get("seed")),
            pruner=pruner_from(OmegaConf.create(o)))
        if study.direction.name.lower() != direction:
            raise ValueError(f"study {name} exists with direction "
                             f"{study.direction.name.lower()}; hydra.sweeper.direction="
                             f"{direction} needs another hydra.sweeper.study_name")
        why = check_same_space(study, space.params)
        if why:
            raise ValueError(why)
        seed = o.get("seed")
        if seed is not None and study.trials:
            # A continued study must not replay the first run's draws: seed + trials so far.
            study.sampler = make_sampler(o.get("sampler", "tpe"), int(seed) + len(study.trials))
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
        OmegaConf.save(OmegaConf.create({
            "study_name": name, "storage": o.get("storage") or str(sweep_dir / "study.journal"),
            "metric": metric, "direction": direction,
            "space": dict(describe(space.params)), "fixed": space.fixed}),
            sweep_dir / "study.yaml")
        interval = float(o.get("heartbeat_interval", HEARTBEAT_INTERVAL))
        grace = float(o.get("heartbeat_grace", HEARTBEAT_GRACE))
        owner = this_process(interval)
        # Only trials whose search is provably gone: other searches may be running this study.
        stale = recover_stale(study, grace, owner)
        if stale:
            log.info(f"{stale} trial(s) left running by a search that is gone: run again")
        n_trials, n_jobs = int(o.get("n_trials", 20)), max(1, int(o.get("n_jobs", 1)))
        done, elsewhere = finished_count(study), running_count(study)
        log.info(f"study {name} in {sweep_dir}: {done} of {n_trials} trials done"
                 + (f", {elsewhere} running in other searches" if elsewhere else "")
                 + f"; objective {direction} {metric}")
        extra = self._thread_override(n_jobs, arguments)
        launcher = self._launcher(n_jobs)
        results: list = []
        lock = threading.Lock()

        def worker(beat: Heartbeat) -> None:
            # Asynchronous: a slot takes the next trial as soon as its last one ends (a pruned
            # trial frees its slot at once), as Optuna's own n_jobs does. n_trials counts the
            # whole study: finished trials and those running in any search.
            while True:
                with lock:
                    recover_stale(study, grace, owner)  # a search that died meanwhile
                    if finished_count(study) + running_count(study) >= n_trials:
                        return
                    trial = ask(study, space.params, owner)
                    beat.add(trial._trial_id)
                try:
                    log.info(f"trial {trial.number} started{_rerun(trial)}: "
                             f"{_params(trial.params)}")
                    overrides = [[*space.overrides(trial.params), *extra,
                                  f"trial={trial.number}"]]
                    (ret,) = launcher.launch(overrides, initial_job_idx=trial.number)
                    with lock:
                        results.append(self._tell(study, trial, ret, sweep_dir, state_of))
                finally:
                    beat.discard(trial._trial_id)

        with Heartbeat(study._storage, interval) as beat:
            if n_jobs == 1:
                worker(beat)
            else:
                with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                    for future in [pool.submit(worker, beat) for _ in range(n_jobs)]:
                        future.result()
        self._summary(study, metric, sweep_dir)
        return results

    def _thread_override(self, n_jobs: int, arguments: Sequence[str]) -> List[str]:
        """n_jobs trials at a time share the cores: each gets cores // n_jobs torch threads."""
        launcher = str(self.config.hydra.launcher.get("_target_", ""))
        if n_jobs == 1 or "slurm" in launcher.lower() or any(
                a.split("=", 1)[0] == "trainer.num_threads" for a in arguments):
            return []
        return [f"trainer.num_threads={max(1, (os.cpu_count() or 1) // n_jobs)}"]

    def _tell(self, study, trial, ret, sweep_dir: Path, state_of):
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        from pinn.sweep.study import STALE

        try:
            outcome = ret.return_value
        except Exception as e:  # noqa: BLE001 - the job raised: a failed trial, the study goes on
            outcome = {"status": "failed", "message": f"{type(e).__name__}: {e}"}
        if not isinstance(outcome, dict):
            outcome = {"status": "failed", "message": f"the job returned {outcome!r}"}
        state, value = state_of(outcome)
        try:
            for key in ("status", "message", "steps", "wall_time_s"):
                if outcome.get(key) is not None:
                    study._storage.set_trial_user_attr(trial._trial_id, key, outcome[key])
            study._storage.set_trial_user_attr(trial._trial_id, "run_dir",
                                               str(sweep_dir / str(trial.number)))
            if state == TrialState.COMPLETE:
                study.tell(trial, value, skip_if_finished=True)
            else:
                study.tell(trial, state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:
            pass  # another search found it stale meanwhile: warned below
        log.info(f"trial {trial.number} ended: {_ending(outcome, state, value)}")
        stored = study._storage.get_trial(trial._trial_id)
        if stored.user_attrs.get(STALE) and stored.state == TrialState.FAIL:
            log.warning(f"trial {trial.number} had been declared stale by another search "
                        f"({stored.user_attrs[STALE]}) and is run again there; this run's "
                        f"result stays in {sweep_dir / str(trial.number)}")
        return outcome

    def _summary(self, study, metric: str, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        states = [t.state for t in study.get_trials(deepcopy=False)]
        counts = {s.name.lower(): states.count(s) for s in
                  (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        best = None
        try:
            best = study.best_trial
        except ValueError:
            pass
        summary = {"study_name": study.study_name, "metric": metric, "trials": counts}
        if best is not None:
            summary.update({"best_trial": best.number, "best_value": best.value,
                            "best_params": best.params,
                            "best_run": str(sweep_dir / str(best.number))})
            log.info(f"best trial {best.number}: {metric} = {best.value:.4e} with "
                     f"{_params(best.params)}; run folder {sweep_dir / str(best.number)}")
        OmegaConf.save(OmegaConf.create(summary), sweep_dir / "optimization_results.yaml")
        log.info(f"report: python -m pinn.report {sweep_dir}")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _params(params: dict) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


def _rerun(trial) -> str:
    number = trial.user_attrs.get("rerun_of")
    return "" if number is None else f" (trial {number} again)"


def _ending(outcome: dict, state, value: Optional[float]) -> str:
    """One line: how a trial ended, its objective, steps and wall time, or why it failed."""
    status = str(outcome.get("status"))
    shown = value if value is not None else outcome.get("value")
    parts = [status]
    if isinstance(shown, float) and shown == shown:
        parts[0] += f", {outcome.get('metric', 'objective')} {shown:.4e}"
    if outcome.get("steps") is not None:
        wall = outcome.get("wall_time_s")
        parts.append(f"{outcome['steps']} steps" + (f" in {wall:.1f} s" if wall else ""))
    if status not in ("completed", "pruned") and outcome.get("message"):
        parts.append(" ".join(str(outcome["message"]).split()))
    return "; ".join(parts)


def _first(distribution) -> str:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return str(distribution.choices[0])
    return repr(distribution.low)

