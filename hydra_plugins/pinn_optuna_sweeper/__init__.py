"""Hydra sweeper ``hydra/sweeper=optuna``: a search with a current Optuna, pruning and a study
on disk (see pinn.sweep)."""
