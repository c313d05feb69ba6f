"""The parts of a training run that the trainer (:mod:`pinn.trainer`) calls, one concern each,
each with ``state_dict()`` / ``load_state_dict()`` where it holds state that a checkpoint
keeps (a checkpoint's training state is the union of theirs):

- :mod:`pinn.training.events`: the run's events with their steps;
- :mod:`pinn.training.clock`: time per stage, compile time, the budget, the logged rate;
- :mod:`pinn.training.engines`: the derivative engine of the loss;
- :mod:`pinn.training.points`: points, redraws (RAD), observations, loss weights (balancing),
  causal weights;
- :mod:`pinn.training.optimizers`: Adam and its schedule, the quasi-Newton stage, the stall
  window, the learning-rate factor of rollbacks;
- :mod:`pinn.training.bn`: the BN schedule (calibrate, freeze) and the divergence probe;
- :mod:`pinn.training.rollback`: the last finite state and the non-finite policies;
- :mod:`pinn.training.ranks`: gradients, stop decisions and a lost rank under torchrun.
"""
from pinn.training.bn import BNSchedule, DivergenceProbe
from pinn.training.clock import RunClock
from pinn.training.engines import EngineChoice
from pinn.training.events import EventLog
from pinn.training.optimizers import Optimizers, make_scheduler
from pinn.training.points import PointSets
from pinn.training.ranks import Ranks
from pinn.training.rollback import RollbackGuard

__all__ = ["BNSchedule", "DivergenceProbe", "EngineChoice", "EventLog", "Optimizers",
           "PointSets", "Ranks", "RollbackGuard", "RunClock", "make_scheduler"]
