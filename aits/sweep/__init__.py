"""``aits sweep``: hyperparameter studies on Optuna, every trial a normal training run directory."""
