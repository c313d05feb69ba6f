"""Command-line checks of a search (``hydra/sweeper=optuna``), before any trial starts: the
sweeper's options, the search space and the objective metric, each refused in one line."""
from __future__ import annotations

import difflib
import re
from typing import Callable, List, Sequence

from omegaconf import OmegaConf

from pinn.compose_errors import chain_text, composition_error
from pinn.sweep.space import SearchSpaceError, parse_search_space

SWEEPER = "hydra/sweeper=optuna"


def is_search(overrides: Sequence[str]) -> bool:
    return any(o.replace(" ", "") == SWEEPER for o in overrides)


def check_search(overrides: Sequence[str], multirun: bool,
                 compose: Callable[[List[str], bool], object]) -> None:
    """Raise ``ValueError`` (one line) for a search that cannot start.

    Args:
        overrides: the command line's overrides.
        multirun: whether ``-m`` (``--multirun``) was given.
        compose: ``compose(overrides, with_hydra_config)``, as ``python -m pinn.train`` does.
    """
    if not multirun:
        raise ValueError(f"{SWEEPER} searches only in a multirun: add -m "
                         "(python -m pinn.train -m hydra/sweeper=optuna ...)")
    hydra_lines = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    task_lines = [o for o in overrides if o not in hydra_lines]
    for i, line in enumerate(hydra_lines):
        try:
            compose([*hydra_lines[:i + 1]] if SWEEPER in hydra_lines[:i + 1]
                    else [SWEEPER, *hydra_lines[:i + 1]], True)
        except Exception as e:  # noqa: BLE001 - Hydra's errors come in several types
            raise ValueError(_sweeper_error(e, line)) from None
    cfg = compose([*hydra_lines], True)
    sweeper = cfg.hydra.sweeper
    params = OmegaConf.to_container(sweeper.params, resolve=True) or {}
    try:
        space = parse_search_space(task_lines, params)
    except SearchSpaceError as e:
        raise ValueError(str(e)) from None
    _require(sweeper.n_trials >= 1, "hydra.sweeper.n_trials", sweeper.n_trials, "an integer >= 1")
    _require(sweeper.n_jobs >= 1, "hydra.sweeper.n_jobs", sweeper.n_jobs, "an integer >= 1")
    _require(sweeper.pruner_startup_trials >= 0, "hydra.sweeper.pruner_startup_trials",
             sweeper.pruner_startup_trials, "an integer >= 0")
    _require(sweeper.pruner_warmup_steps >= 0, "hydra.sweeper.pruner_warmup_steps",
             sweeper.pruner_warmup_steps, "an integer >= 0")
    _require(0 < sweeper.pruner_percentile < 100, "hydra.sweeper.pruner_percentile",
             sweeper.pruner_percentile, "a number between 0 and 100")
    _require(sweeper.heartbeat_interval > 0, "hydra.sweeper.heartbeat_interval",
             sweeper.heartbeat_interval, "a number of seconds > 0")
    _require(sweeper.heartbeat_grace > sweeper.heartbeat_interval,
             "hydra.sweeper.heartbeat_grace", sweeper.heartbeat_grace,
             f"more seconds than hydra.sweeper.heartbeat_interval={sweeper.heartbeat_interval} "
             "(a few intervals, so that one late heartbeat does not end a live trial)")
    if any(o.split("=", 1)[0].lstrip("+~") == "trial" for o in task_lines):
        raise ValueError("trial is set by the optuna sweeper for each job; leave it out")
    from pinn.pdes import build_pde
    from pinn.sweep.trial import check_metric

    first = [*space.fixed, *(f"{k}={_first(d)}" for k, d in space.params.items())]
    job = compose(first, False)
    check_metric(sweeper.metric, build_pde(job.pde))


def _require(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value} is not allowed: {allowed}")


def _first(d) -> str:
    return str(d.choices[0]) if hasattr(d, "choices") else repr(d.low)


def _sweeper_error(exc: BaseException, line: str) -> str:
    text = chain_text(exc)
    from hydra_plugins.pinn_optuna_sweeper.config import OptunaSweeperConf

    options = [k for k in OptunaSweeperConf.__dataclass_fields__ if not k.startswith("_")]
    m = re.search(r"Key '([^']+)' not in 'OptunaSweeperConf'", text)
    if m:
        match = difflib.get_close_matches(m.group(1), options, n=1, cutoff=0.6)
        hint = f" (did you mean hydra.sweeper.{match[0]}?)" if match else ""
        return (f"hydra.sweeper.{m.group(1)} is not an option of the optuna sweeper{hint}; "
                f"options: {', '.join(options)}")
    return composition_error(exc, line, OmegaConf.create({}))
