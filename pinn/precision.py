"""float64 on a GPU: how much slower the device's float64 matrix products are than its float32
ones, measured once per device and cached, and the one line a run prints when that is far.

Data-centre GPUs (A100, H100, H200) run float64 matrix products at about half their float32
rate (or better, with float64 tensor cores); consumer and workstation cards at 1/32 to 1/64.
pinn trains in float64 by default, so on the latter a run would be 10-60x slower than it need
be, silently. At start-up on a CUDA device with ``precision=float64`` the trainer asks
:func:`float64_note`; the probe (two square products, well under a second) runs the first time
a device is seen and its rates are kept in ``$XDG_CACHE_HOME/pinn/precision.json`` (else
``~/.cache/pinn/precision.json``), keyed by the device's name and the torch version.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

#: float32 over float64 matrix rate from which the run says so.
SLOW_RATIO = 8.0

#: The default run (Burgers, ``python -m pinn.train``) on the CPU, relative L2 error, median of
#: seeds 0-2 in each precision: what choosing float32 costs (docs/devices.md says how measured).
DEFAULT_RUN_FLOAT64 = "1.1e-5"
DEFAULT_RUN_FLOAT32 = "5.4e-5"


def cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "pinn" / "precision.json"


def measure(device: torch.device, size: int = 1024, reps: int = 5) -> Dict[str, float]:
    """GFLOP/s of a square ``size`` product in float32 and in float64 on ``device`` (the
    fastest of ``reps`` after a warm-up; float32 with full precision, no TF32)."""
    rates = {}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        a = torch.randn(size, size, dtype=dtype, device=device)
        b = torch.randn(size, size, dtype=dtype, device=device)
        a @ b
        _sync(device)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        rates[name] = 2.0 * size ** 3 / max(best, 1e-12) / 1e9
    return rates


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cached_rates(name: str, probe: Callable[[], Dict[str, float]],
                 path: Optional[Path] = None) -> Dict[str, float]:
    """The rates of the device called ``name``: from the cache file, else ``probe()`` (then
    written there; a cache that cannot be read or written is measured around, never fatal)."""
    path = cache_file() if path is None else Path(path)
    key = f"{name} | torch {torch.__version__}"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and {"float32", "float64"} <= set(entry):
        return {k: float(entry[k]) for k in ("float32", "float64")}
    rates = probe()
    known[key] = rates
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass
    return rates


def float64_note(name: str, rates: Dict[str, float]) -> Optional[str]:
    """One line when float64 runs far slower than float32 on the device ``name``, else None."""
    ratio = rates["float32"] / max(rates["float64"], 1e-12)
    if ratio < SLOW_RATIO:
        return None
    cost = ("what float32 costs in accuracy on the default run is not measured yet"
            if DEFAULT_RUN_FLOAT32 is None else
            f"on the default run float32 reached {DEFAULT_RUN_FLOAT32} against "
            f"{DEFAULT_RUN_FLOAT64} in float64 (relative L2, median of seeds 0-2 on a CPU; "
            "docs/devices.md)")
    return (f"precision=float64 on {name}: float64 matrix products run at 1/{ratio:.0f} of "
            f"the float32 rate here ({rates['float64']:.0f} against {rates['float32']:.0f} "
            f"GFLOP/s); precision=float32 trains faster, and {cost}")


def device_note(device: torch.device, precision: str,
                path: Optional[Path] = None) -> Optional[str]:
    """:func:`float64_note` for a run on ``device`` in ``precision`` (None off CUDA or in
    float32)."""
    if device.type != "cuda" or str(precision) != "float64":
        return None
    name = torch.cuda.get_device_name(device)
    return float64_note(name, cached_rates(name, lambda: measure(device), path))


__all__ = ["SLOW_RATIO", "cache_file", "cached_rates", "device_note", "float64_note", "measure"]
