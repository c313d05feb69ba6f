"""Where a run computes: the one place that asks torch about accelerators.

The device is decided once, at start-up (``device=auto|cpu|cuda|cuda:N``), and handed down:
the model is moved there and every tensor made later is made like one that lives there.
Randomness stays on the CPU (collocation points are drawn by a CPU generator and then moved), so
a seed gives the same points on every device. Checkpoints hold CPU tensors only
(:func:`to_cpu`), so a run trained on a GPU resumes on a CPU and the other way round.
"""
from __future__ import annotations

import platform
from typing import Any, Dict, Mapping

import torch

from pinn.validation import DEVICE_ALLOWED as ALLOWED, DEVICE_SPEC as SPEC


class DeviceError(ValueError):
    """A device that is not a valid name or not present on this machine."""


def resolve_device(spec: str, key: str = "device") -> torch.device:
    """The torch device for ``spec``.

    ``auto`` is CUDA (the current device) when torch sees a GPU, else the CPU; ``cuda`` and
    ``cuda:N`` must exist.

    Raises:
        DeviceError: one line naming ``key``, the value and what is allowed or present.
    """
    spec = str(spec).strip().lower()
    if not SPEC.match(spec):
        raise DeviceError(f"{key}={spec!r} is not allowed: {ALLOWED}")
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "torch sees no CUDA device")
        raise DeviceError(f"{key}={spec} is not available on this machine ({why}, torch "
                          f"{torch.__version__}); use {key}=cpu or {key}=auto")
    dev = torch.device(spec)
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise DeviceError(f"{key}={spec} is not available: this machine has {count} CUDA "
                          f"device(s), cuda:0 to cuda:{count - 1}")
    return dev


def device_info(device: torch.device) -> Dict[str, str]:
    """``device`` (as ``cuda:0`` or ``cpu``) and ``device_name`` for metrics.json."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index)}
    return {"device": "cpu", "device_name": cpu_name()}


def cpu_name() -> str:
    """The processor's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def configure_tf32(device: torch.device, allow: bool) -> None:
    """Full float32 matrix products (``allow=False``, the default) or TensorFloat-32 on CUDA.

    TF32 keeps float32's range but rounds the factors of a product to 10 mantissa bits (about
    1e-3 relative): faster on Ampere and later GPUs, too coarse for the second derivatives of a
    PINN. float64 runs are unaffected; on the CPU the setting has no effect.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(allow)
        torch.backends.cudnn.allow_tf32 = bool(allow)
    torch.set_float32_matmul_precision("high" if allow else "highest")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timing); nothing to do on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor on the CPU (what a checkpoint holds)."""
    return to_device(obj, torch.device("cpu"))


def as_floats(terms: Mapping[str, object]) -> Dict[str, float]:
    """``terms`` (0-d tensors or numbers) as Python floats: one host read for all the
    tensors among them, none when there are none."""
    names = [k for k, v in terms.items() if torch.is_tensor(v)]
    if not names:
        return {k: float(v) for k, v in terms.items()}
    read = dict(zip(names, torch.stack([terms[k].detach().reshape(())
                                        for k in names]).tolist()))
    return {k: read[k] if k in read else float(v) for k, v in terms.items()}
