"""pinn: physics-informed neural networks with explicit batch-normalization semantics.

The public names load on first use (PEP 562), so that ``python -m pinn.train`` can refuse a bad
command line before torch is imported.
"""
from importlib import import_module
from typing import Any

# public name -> the module that defines it
_PUBLIC = {"load_run": "pinn.api", "compute_derivatives": "pinn.derivatives",
           "derivatives_by_name": "pinn.derivatives_nd", "Axes": "pinn.coords",
           "calibrate_bn": "pinn.nn", "set_bn_mode": "pinn.nn"}

__all__ = list(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pinn' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__():
    return sorted([*globals(), *_PUBLIC])
