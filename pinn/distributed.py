"""Several processes, one run: data parallelism under ``torchrun``, with global reductions.

``torchrun --nproc_per_node=N -m pinn.train ...`` starts N processes (ranks). Every rank draws
the same global set of points from the run's seed and keeps its slice (:func:`shard_range`);
each loss term is the mean over the *global* set, written as a sum of per-rank contributions
(``mean over the slice x slice size / global size``), so that summing the ranks' parameter
gradients (one all-reduce of one flat buffer per evaluation, :func:`reduce_gradients`) gives
the gradient of the single-process loss on the same points. Batch normalization asks
:func:`moments` for its statistics: the mean and biased variance of the union of the ranks'
batches, differentiated through in ``batch`` mode (the all-reduce's backward is an all-reduce).

Why not ``torch.nn.parallel.DistributedDataParallel``: DDP synchronizes gradients from hooks it
arms in its own ``forward``; the Taylor engine (:mod:`pinn.taylor`) evaluates the layers
without that call, and a PINN step evaluates the network several times, with double backward.
One explicit all-reduce after the backward pass is what DDP does for a small network, without
the hooks. ``nn.SyncBatchNorm`` does not run on the CPU; :func:`moments` does, on any backend.

Nothing here runs on one process: :func:`current` is None and every reduction is the identity,
so the single-process path computes exactly what it computed before.
"""
from __future__ import annotations

import gc
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from pinn.device import DeviceError, resolve_device


@dataclass(frozen=True)
class Group:
    """This process's place in a distributed run."""

    rank: int
    world: int
    local_rank: int
    backend: str  # gloo (CPU) or nccl (CUDA)
    device: torch.device


_GROUP: Optional[Group] = None
_LOCAL = 0  # depth of local() contexts: reductions are identities inside
_STORE = None  # a client of the launcher's key-value store (survivor census), or None


def launched() -> bool:
    """Started by torchrun (or anything that sets ``WORLD_SIZE``) with more than one rank."""
    return env_world() > 1


def env_rank() -> int:
    """This process's rank as the launcher set it (0 outside a distributed launch)."""
    return int(os.environ.get("RANK", "0"))


def env_world() -> int:
    """The number of ranks the launcher started (1 outside a distributed launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_local_rank() -> int:
    """This process's rank on its node (its GPU under torchrun)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))


def current() -> Optional[Group]:
    """The distributed group this process belongs to, or None (one process, or inside
    :func:`local`)."""
    return _GROUP if _LOCAL == 0 else None


def is_writer() -> bool:
    """Whether this process writes the run folder: rank 0, or the only process."""
    return _GROUP is None or _GROUP.rank == 0


@contextmanager
def local() -> Iterator[None]:
    """Within the context, reductions are identities: a computation one rank makes alone on a
    set it holds whole (the divergence log on the global batch, evaluation)."""
    global _LOCAL
    _LOCAL += 1
    try:
        yield
    finally:
        _LOCAL -= 1


def rank_device(spec: str, local_rank: int, world: int) -> torch.device:
    """The device of one rank: ``auto``/``cuda`` give each rank its own GPU (``cuda:LOCAL_RANK``)
    when CUDA is available; ``cuda:N`` would put every rank on one GPU and is refused."""
    spec = str(spec).strip().lower()
    device = resolve_device(spec)
    if device.type != "cuda":
        return device
    if spec.startswith("cuda:"):
        raise DeviceError(f"device={spec} under torchrun would put all {world} ranks on one "
                          f"GPU; use device=auto or device=cuda (one GPU per rank, cuda:LOCAL_RANK)")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise DeviceError(f"device={spec}: rank {local_rank} of this node has no GPU of its own "
                          f"({count} visible); start at most {count} processes per node")
    return torch.device(f"cuda:{local_rank}")


def start(device_spec: str, timeout_s: float) -> Group:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on the CPU, nccl on GPUs.

    Args:
        device_spec: the run's ``device`` setting.
        timeout_s: how long a collective may wait for a rank that does not answer before the
            run ends (``distributed.timeout_s``).
    """
    global _GROUP, _STORE
    world, rank, local_rank = env_world(), env_rank(), env_local_rank()
    device = rank_device(device_spec, local_rank, world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=float(timeout_s)))
    _GROUP = Group(rank, world, local_rank, backend, device)
    _STORE = _census_store()
    return _GROUP


def _census_store():
    """A client of torchrun's own key-value store, which outlives the ranks (so that the
    survivors of a lost rank can count each other); None when the launcher hosts none."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":
        return None
    try:
        return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                             is_master=False, timeout=timedelta(seconds=10))
    except Exception:  # noqa: BLE001 - the census is a courtesy; the run ends either way
        return None


def stop() -> None:
    """Leave the process group (tensors that hold communication state must be freed first:
    a group destroyed under live ones aborts the process at exit)."""
    global _GROUP, _STORE
    gc.collect()
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group (a lost rank) cannot be torn down
            pass
    _GROUP, _STORE = None, None


# -- reductions -----------------------------------------------------------------------------
def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (a new tensor, no gradient); ``t`` itself on one
    process."""
    if current() is None:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def all_max(t: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of ``t`` over the ranks; ``t`` on one process."""
    if current() is None:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks, differentiable (the backward pass sums the gradients
    of all ranks, again through an all-reduce); ``t`` itself on one process."""
    if current() is None:
        return t
    if not t.requires_grad:
        return all_sum(t)
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


def moments(h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Feature-wise mean and biased variance of ``h`` (N, C) over the union of all ranks'
    rows, each (C,): two passes (mean, then squared deviations from it), as accurate as the
    single-process statistics; differentiable when ``h`` is."""
    n = h.new_tensor([float(h.shape[0])])
    sums = global_sum(torch.cat([h.sum(0), n]))  # (C + 1,): one all-reduce for both
    mean = sums[:-1] / sums[-1]
    var = global_sum((h - mean).square().sum(0)) / sums[-1]
    return mean, var


def reduce_gradients(params: Sequence[torch.Tensor]) -> int:
    """Replace each parameter's gradient by its sum over the ranks: one all-reduce of one flat
    buffer. Returns the bytes reduced (0 on one process). Parameters without a gradient are
    left so (the same ones on every rank: all ranks run the same program)."""
    if current() is None:
        return 0
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n
    return flat.numel() * flat.element_size()


def agree(flags: Sequence[float], like: torch.Tensor) -> List[float]:
    """The elementwise maximum of small numbers over the ranks (stop requests, budget
    decisions): every rank then takes the same branch."""
    if current() is None:
        return list(flags)
    return all_max(torch.tensor(list(flags), dtype=torch.float64, device=like.device)).tolist()


# -- sharding -------------------------------------------------------------------------------
def shard_range(n: int, rank: int, world: int) -> Tuple[int, int]:
    """Rows [a, b) of ``n`` that ``rank`` of ``world`` holds: contiguous, sizes differ by at
    most one."""
    return n * rank // world, n * (rank + 1) // world


def shard_batch(batch, group: Group):
    """This rank's slice of a global :class:`pinn.sampling.Batch` and the share of each loss
    term's set it holds ({"res", "ic", "bc": slice size / global size}). Boundary points are
    sharded by pairs (the x_min and x_max rows of one time stay together)."""
    r, w = group.rank, group.world
    a, b = shard_range(batch.x_int.shape[0], r, w)
    c, d = shard_range(batch.x_ic.shape[0], r, w)
    pairs = batch.x_bc.shape[0] // 2
    e, f = shard_range(pairs, r, w)
    bc = lambda v: torch.cat([v[e:f], v[pairs + e:pairs + f]])  # noqa: E731
    local = type(batch)(batch.x_int[a:b], batch.t_int[a:b], batch.x_ic[c:d], batch.t_ic[c:d],
                        bc(batch.x_bc), bc(batch.t_bc))
    share = lambda lo, hi, n: (hi - lo) / n if n else 1.0  # noqa: E731
    return local, {"res": share(a, b, batch.x_int.shape[0]),
                   "ic": share(c, d, batch.x_ic.shape[0]), "bc": share(e, f, pairs)}


def shard_observations(data, group: Group):
    """This rank's slice of :class:`pinn.data.Observations` (weights normalized over the
    whole set beforehand) and its share of the data term."""
    n = len(data)
    a, b = shard_range(n, group.rank, group.world)
    w = None if data.weights is None else data.weights[a:b]
    return replace(data, x=data.x[a:b], t=data.t[a:b], values=data.values[a:b], weights=w), \
        (b - a) / n


def sharded_map(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
    """``fn(x, t)`` (N,) for a set every rank holds whole, each rank computing its slice: the
    slices meet by one all-reduce of a zero-filled (N,) vector (adding zeros is exact)."""
    group = current()
    if group is None:
        return fn(x, t)
    a, b = shard_range(x.shape[0], group.rank, group.world)
    part = fn(x[a:b], t[a:b]).detach()
    full = part.new_zeros(x.shape[0])
    full[a:b] = part
    dist.all_reduce(full)
    return full


def check_sets(cfg, pde, data) -> None:
    """Refuse a run whose point sets cannot give every rank at least one point (boundary
    points count in x_min/x_max pairs).

    Raises:
        ValueError: one line naming the key, its value and the number of ranks.
    """
    world = env_world()
    s = cfg.sampler
    sizes = {"sampler.n_interior": s.n_interior, "sampler.n_initial": s.n_initial,
             "sampler.n_boundary": s.n_boundary // 2 * 2}
    for key, n in sizes.items():
        per_rank = n // 2 if key == "sampler.n_boundary" else n
        if 0 < per_rank < world:
            what = "pairs of boundary points" if key == "sampler.n_boundary" else "points"
            raise ValueError(f"{key}={n} gives fewer {what} ({per_rank}) than the {world} "
                             f"ranks torchrun started; use more points or fewer processes")
    if data is not None and len(data) < world:
        raise ValueError(f"data.file={cfg.data.file} holds {len(data)} observations, fewer "
                         f"than the {world} ranks torchrun started; use fewer processes")


def from_rank0(value: str) -> str:
    """Rank 0's ``value`` (a short text) on every rank."""
    if current() is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# -- a lost rank ----------------------------------------------------------------------------
def is_communication_error(e: BaseException) -> bool:
    """Whether ``e`` is a collective that failed (a rank died, or did not answer in time)."""
    if current() is None:
        return False
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(
        w in text for w in ("gloo", "nccl", "connection", "peer", "timed out", "timeout"))


def survivors(wait_s: float = 3.0) -> Optional[List[int]]:
    """The ranks still alive after a failed collective, by a census in torchrun's key-value
    store (each survivor signs in, then waits up to ``wait_s`` for the others); None when
    there is no store to count with."""
    group = _GROUP
    if group is None or _STORE is None:
        return None
    try:
        prefix = f"pinn/survivors/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/"
        _STORE.set(f"{prefix}{group.rank}", "1")
        deadline = time.monotonic() + wait_s
        alive: List[int] = []
        while True:
            alive = [r for r in range(group.world) if _STORE.check([f"{prefix}{r}"])]
            if len(alive) == group.world or time.monotonic() >= deadline:
                return alive
            time.sleep(0.1)
    except Exception:  # noqa: BLE001
        return None
