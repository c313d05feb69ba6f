"""The domains problems live on: so far axis-aligned boxes times an optional time interval
(:mod:`pinn.geometry.box`)."""
from pinn.geometry.box import FACE_ALIASES, Domain, Face

__all__ = ["Domain", "Face", "FACE_ALIASES"]
