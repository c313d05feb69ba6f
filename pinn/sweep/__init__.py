"""Hyperparameter search: the search space in Hydra's override syntax, the Optuna study on disk,
and the per-trial reporter that lets a pruner stop a run at an evaluation."""
