"""The options of ``hydra/sweeper=optuna`` (``hydra.sweeper.<option>``), typed, so that a typo
or a value outside the allowed ones stops at composition."""
from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


class Sampler(Enum):
    tpe = 1
    random = 2
    cmaes = 3
    gp = 4
    qmc = 5


class Pruner(Enum):
    none = 1
    median = 2
    percentile = 3
    successive_halving = 4
    hyperband = 5


class Direction(Enum):
    minimize = 1
    maximize = 2


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.pinn_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    n_trials: int = 20               # trials in the study (completed, pruned and failed)
    n_jobs: int = 1                  # trials at a time, each in its own process when > 1
    sampler: Sampler = Sampler.tpe   # tpe | random | cmaes | gp | qmc
    seed: Optional[int] = 0          # the sampler's seed; null = unseeded
    direction: Direction = Direction.minimize  # minimize | maximize the metric
    metric: Optional[str] = None     # null: error/l2_rel/<first output>, else loss/total
    pruner: Pruner = Pruner.median   # none | median | percentile | successive_halving | hyperband
    pruner_startup_trials: int = 5   # median, percentile: completed trials before any pruning
    pruner_warmup_steps: int = 0     # training steps before a trial may be pruned
    pruner_percentile: float = 25.0  # percentile pruner: keep trials in the best p percent
    study_name: Optional[str] = None  # null: <pde>-<hash of the command's overrides>
    storage: Optional[str] = None    # null: <sweep dir>/study.journal; a path or sqlite:///...
    # Two searches may share a study. A trial's search refreshes its heartbeat every
    # heartbeat_interval seconds; a trial of a search on another machine with no heartbeat for
    # heartbeat_grace seconds is run again (on this machine a dead pid tells at once).
    heartbeat_interval: float = 10.0  # seconds between a search's heartbeats for its trials
    heartbeat_grace: float = 60.0     # seconds without one: another machine's trial runs again
    params: Dict[str, str] = field(default_factory=dict)  # key -> search space, as on the CLI


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="pinn")
