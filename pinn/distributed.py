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
from pathlib import Path
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
_WRITER = 0  # the rank that writes the run folder (rank 0; after a lost rank, see census)


class CollectiveError(RuntimeError):
    """A collective operation of this module failed: a rank died, or did not answer within
    ``distributed.timeout_s``. Every collective the training step makes goes through
    :func:`_collective`, which raises this type whatever the backend's own error says, so
    that the trainer recognises a lost rank by type, never by message text."""


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


# How long a rank other than 0 waits, on a mistake every rank meets, before it exits itself.
REFUSAL_GRACE_S = 20.0


def exit_refused(code: int = 2) -> None:
    """Exit with ``code`` on a mistake every rank meets (a bad key, a refused search): rank 0
    says it and exits at once; under torchrun the other ranks first give rank 0 time to print,
    since the launcher ends every rank as soon as one exits, which could end rank 0 before its
    line is out. The launcher ends them when rank 0 exits; they exit themselves after
    :data:`REFUSAL_GRACE_S` where it does not."""
    if launched() and env_rank() != 0:
        time.sleep(REFUSAL_GRACE_S)
    raise SystemExit(code)


def current() -> Optional[Group]:
    """The distributed group this process belongs to, or None (one process, or inside
    :func:`local`)."""
    return _GROUP if _LOCAL == 0 else None


def is_writer() -> bool:
    """Whether this process writes the run folder: rank 0, or the only process (after a lost
    rank: the lowest surviving rank, see :func:`census`)."""
    return _GROUP is None or _GROUP.rank == _WRITER


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
    global _GROUP, _WRITER
    world, rank, local_rank = env_world(), env_rank(), env_local_rank()
    device = rank_device(device_spec, local_rank, world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=float(timeout_s)))
    _GROUP = Group(rank, world, local_rank, backend, device)
    _WRITER = 0
    return _GROUP


def stop() -> None:
    """Leave the process group (tensors that hold communication state must be freed first:
    a group destroyed under live ones aborts the process at exit)."""
    global _GROUP, _WRITER
    gc.collect()
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group (a lost rank) cannot be torn down
            pass
    _GROUP, _WRITER = None, 0


# -- reductions -----------------------------------------------------------------------------
def _collective(fn: Callable, *args, **kwargs):
    """Run one collective of the process group; any failure becomes :class:`CollectiveError`
    (its cause chained), whatever the backend raised and said."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - every failure of a collective means the same
        raise CollectiveError(f"{getattr(fn, '__name__', 'collective')}: {e}") from e


def _all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    """In-place all-reduce of ``t`` (sum unless ``op``); returns ``t``."""
    _collective(dist.all_reduce, t, op=dist.ReduceOp.SUM if op is None else op)
    return t


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (a new tensor, no gradient); ``t`` itself on one
    process."""
    if current() is None:
        return t
    return _all_reduce(t.detach().clone())


def all_max(t: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of ``t`` over the ranks; ``t`` on one process."""
    if current() is None:
        return t
    return _all_reduce(t.detach().clone(), dist.ReduceOp.MAX)


class _GlobalSum(torch.autograd.Function):
    """Sum over the ranks whose backward pass is the sum of the ranks' gradients (both
    all-reduces through :func:`_collective`, so a rank lost inside ``backward()`` is a
    :class:`CollectiveError` too)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        return _all_reduce(t.clone(memory_format=torch.contiguous_format))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Itself a _GlobalSum: differentiable again, as derivatives with respect to the inputs
        # (create_graph=True) followed by the parameter gradient need.
        return _GlobalSum.apply(grad)


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks, differentiable (the backward pass sums the gradients
    of all ranks, again through an all-reduce); ``t`` itself on one process."""
    if current() is None:
        return t
    if not t.requires_grad:
        return all_sum(t)
    return _GlobalSum.apply(t)


def moments(h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Feature-wise mean and biased variance of ``h`` (N, C) over the union of all ranks'
    rows, each (C,): two passes (mean, then squared deviations from it), as accurate as the
    single-process statistics; differentiable when ``h`` is."""
    n = h.new_full((1,), float(h.shape[0]))  # a fill, not a copy from the host
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
    flat = _all_reduce(torch.cat([g.reshape(-1) for g in grads]))
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


def shard_batch(batch, group: Group, per_pair: Optional[Sequence[int]] = None,
                piece_values: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None):
    """This rank's slice of a global :class:`pinn.sampling.Batch` and the share of each loss
    term's set it holds ({"res", "ic", "bc": slice size / global size}). Boundary points are
    sharded by pairs (the two faces' rows of one draw stay together); ``per_pair``: the misfit
    values a pair of each space axis gives (:func:`pinn.losses.boundary_values_per_pair`), so
    that the ``bc`` share counts values, not pairs, where the axes' faces hold different
    conditions (None: every pair alike)."""
    r, w = group.rank, group.world
    n_int, n_ic = batch.interior.shape[0], batch.initial.shape[0]
    a, b = shard_range(n_int, r, w)
    c, d = shard_range(n_ic, r, w)
    faces, held, pairs_all = [], 0, 0
    for i, f in enumerate(batch.faces):
        pairs = f.shape[0] // 2
        e, g = shard_range(pairs, r, w)
        faces.append(torch.cat([f[e:g], f[pairs + e:pairs + g]]))
        k = 1 if per_pair is None else per_pair[i]
        held, pairs_all = held + k * (g - e), pairs_all + k * pairs
    pieces, normals = [], []
    for j, (p, n) in enumerate(zip(batch.boundary, batch.normals)):
        # A region's pieces: rows sharded; the bc share counts conditioned values per point.
        e, g = shard_range(p.shape[0], r, w)
        pieces.append(p[e:g])
        normals.append(n[e:g])
        v = (torch.ones(p.shape[0], dtype=torch.float64) if piece_values is None
             else piece_values(j, p).double().cpu())
        held, pairs_all = held + float(v[e:g].sum()), pairs_all + float(v.sum())
    local = type(batch)(batch.interior[a:b], batch.initial[c:d], tuple(faces), tuple(pieces),
                        tuple(normals))
    share = lambda lo, hi, n: (hi - lo) / n if n else 1.0  # noqa: E731
    return local, {"res": share(a, b, n_int), "ic": share(c, d, n_ic),
                   "bc": share(0, held, pairs_all)}


def shard_observations(data, group: Group):
    """This rank's slice of :class:`pinn.data.Observations` (weights normalized over the
    whole set beforehand) and its share of the data term."""
    n = len(data)
    a, b = shard_range(n, group.rank, group.world)
    w = None if data.weights is None else data.weights[a:b]
    return replace(data, points=data.points[a:b], values=data.values[a:b], weights=w), \
        (b - a) / n


def sharded_map(fn: Callable[[torch.Tensor], torch.Tensor],
                points: torch.Tensor) -> torch.Tensor:
    """``fn(points)`` (N,) for a set every rank holds whole, each rank computing its slice: the
    slices meet by one all-reduce of a zero-filled (N,) vector (adding zeros is exact)."""
    group = current()
    if group is None:
        return fn(points)
    a, b = shard_range(points.shape[0], group.rank, group.world)
    part = fn(points[a:b]).detach()
    full = part.new_zeros(points.shape[0])
    full[a:b] = part
    return _all_reduce(full)


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
    _collective(dist.broadcast_object_list, box, src=0)
    return box[0]


# -- a lost rank ----------------------------------------------------------------------------
def is_communication_error(e: BaseException) -> bool:
    """Whether ``e`` is a collective that failed (a rank died, or did not answer in time): a
    :class:`CollectiveError`, by type."""
    return current() is not None and isinstance(e, CollectiveError)


CENSUS = ".ranks"  # the run folder's sub-folder where the survivors of a lost rank sign in


def census_token() -> str:
    """A name for this launch of the run, the same on every rank (rank 0's, broadcast): the
    census of a later launch in the same run folder does not count this one's signatures."""
    return from_rank0(f"{os.getpid()}-{time.time_ns()}")


def census(folder: Path, wait_s: float = 3.0) -> List[int]:
    """The ranks still alive after a failed collective. Each survivor signs in by creating
    ``folder/<rank>`` (``folder`` in the run folder, shared by the ranks that write it) and
    waits up to ``wait_s`` for the others; signatures stay, so a rank that notices the failure
    later still counts those who signed before. The lowest rank alive becomes the writer
    (:func:`is_writer`): it writes the checkpoint and metrics.json, even when rank 0 is the
    one lost. No launcher store is needed (none may outlive rank 0), and no error text is
    read.

    Ranks on nodes that do not share ``folder`` cannot see each other: each node then counts
    its own survivors and writes its own copy of the run folder's checkpoint."""
    global _WRITER
    group = _GROUP
    if group is None:
        return [0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(group.rank)).touch()
    deadline = time.monotonic() + wait_s
    while True:
        alive = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
        if len(alive) == group.world or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    _WRITER = min(alive)
    return alive
