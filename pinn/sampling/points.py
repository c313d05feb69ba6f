"""Collocation points: interior, initial and boundary sets of a domain, uniform or scrambled
Sobol."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
from torch.quasirandom import SobolEngine

from pinn.coords import Axes
from pinn.geometry import Domain
from pinn.geometry.region import Region
from pinn.sampling.rad import rad_probabilities, weighted_select

# points (M, d) -> (M,) absolute PDE residual of candidate points
Residual = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Batch:
    """One draw of training points, each set (n, d) with the domain's axes as columns.

    Attributes:
        interior: points inside the domain (and time interval).
        initial: points at t = t_min ((0, d) for a steady problem).
        faces: per space axis, the boundary points of its two faces: rows [:m] on the lower
            face, [m:] on the upper face, with the same other coordinates (periodic conditions
            compare the two halves point by point).
        boundary, normals: in a region of shapes (:class:`pinn.geometry.Region`), the points
            (m, d) of each boundary piece and the outward unit normals there (m, k).
    """

    interior: torch.Tensor
    initial: torch.Tensor
    faces: Tuple[torch.Tensor, ...] = field(default_factory=tuple)
    boundary: Tuple[torch.Tensor, ...] = field(default_factory=tuple)
    normals: Tuple[torch.Tensor, ...] = field(default_factory=tuple)

    # -- the 1-D conveniences: (x, t) columns of a problem on an interval in time -----------
    @property
    def x_int(self) -> torch.Tensor:
        return self.interior[:, :1]

    @property
    def t_int(self) -> torch.Tensor:
        return self.interior[:, 1:2]

    @property
    def x_ic(self) -> torch.Tensor:
        return self.initial[:, :1]

    @property
    def t_ic(self) -> torch.Tensor:
        return self.initial[:, 1:2]

    @property
    def x_bc(self) -> torch.Tensor:
        return self.faces[0][:, :1]

    @property
    def t_bc(self) -> torch.Tensor:
        return self.faces[0][:, 1:2]

    @staticmethod
    def from_xt(x_int, t_int, x_ic, t_ic, x_bc, t_bc) -> "Batch":
        """A batch of a problem in (x, t) from its (N, 1) columns."""
        return Batch(torch.cat([x_int, t_int], dim=1), torch.cat([x_ic, t_ic], dim=1),
                     (torch.cat([x_bc, t_bc], dim=1),))

    def state_dict(self) -> Dict[str, object]:
        state = {"interior": self.interior.clone(), "initial": self.initial.clone(),
                 "faces": [f.clone() for f in self.faces]}
        if self.boundary:
            state["boundary"] = [b.clone() for b in self.boundary]
            state["normals"] = [n.clone() for n in self.normals]
        return state

    @staticmethod
    def from_state(state: Dict[str, object], device: torch.device) -> "Batch":
        """The batch of :meth:`state_dict` on ``device``; also the (x, t) columns that
        checkpoints wrote before points had any number of columns."""
        to = lambda v: v.to(device, copy=True)  # noqa: E731
        if "x_int" in state:
            return Batch.from_xt(*(to(state[k]) for k in
                                   ("x_int", "t_int", "x_ic", "t_ic", "x_bc", "t_bc")))
        return Batch(to(state["interior"]), to(state["initial"]),
                     tuple(to(f) for f in state["faces"]),
                     tuple(to(b) for b in state.get("boundary", ())),
                     tuple(to(n) for n in state.get("normals", ())))


class Sampler:
    """Draws :class:`Batch` es in a :class:`pinn.geometry.Domain`.

    ``n_boundary`` points go to the faces in pairs (see :class:`Batch`), split over the space
    axes in proportion to their faces' measures (:meth:`pinn.geometry.Domain.boundary_split`);
    an odd ``n_boundary`` is rounded down. A steady domain has no initial set. All randomness
    comes from one ``torch.Generator`` (uniform) or Sobol engines seeded from it, so a seed
    fixes every draw; successive Sobol draws continue the sequence, so resampling gives new
    points.

    With ``rad=(k, c, oversample)``, a draw given the current residual (``sample(residual)``)
    picks its interior points among ``oversample * n_interior`` candidates of the same kind by
    residual-based adaptive distribution (:mod:`pinn.sampling.rad`); the choice uses the same
    generator, so it is seeded and resumable too.

    Args:
        kind: ``uniform`` or ``sobol``.
        n_interior, n_initial, n_boundary: points per set.
        domain: where the points lie; or (x_min, x_max, t_min, t_max) for a problem in (x, t).
        dtype: floating dtype of the returned tensors.
        generator: source of randomness (a CPU generator: points are drawn on the CPU and
            then moved, so a seed gives the same points on every device).
        rad: (k, c, oversample) of RAD, or None for plain draws only.
        device: where the returned tensors live.
    """

    def __init__(self, kind: str, n_interior: int, n_initial: int, n_boundary: int,
                 domain: Domain, dtype: torch.dtype, generator: torch.Generator,
                 rad: Optional[Tuple[float, float, int]] = None,
                 device: Optional[torch.device] = None):
        if kind not in ("uniform", "sobol"):
            raise ValueError(f"sampler.kind={kind!r} is not allowed: one of uniform, sobol")
        self.kind = kind
        self.rad = rad
        self.last_weights: Optional[torch.Tensor] = None  # of the last RAD draw's points
        if not isinstance(domain, (Domain, Region)):  # (x_min, x_max, t_min, t_max): 1-D
            x0, x1, t0, t1 = domain
            domain = Domain(Axes(("x",), True), [(x0, x1), (t0, t1)])
        self.domain = domain
        self.region = domain if isinstance(domain, Region) else None
        self.n_interior = n_interior
        self.n_initial = n_initial if domain.axes.time else 0
        self.pairs = () if self.region else domain.boundary_split(n_boundary)
        self.per_piece = self.region.boundary_split(n_boundary) if self.region else ()
        self.dtype = dtype
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.generator = generator
        d = domain.dim
        if kind == "sobol" and self.region is not None:
            # One engine per set: interior, initial, then one per boundary piece.
            columns = self.region.unit_columns()
            seeds = torch.randint(0, 2**31 - 1, (len(columns),), generator=generator).tolist()
            self._engines = {k: SobolEngine(max(c, 1), scramble=True, seed=s)
                             for (k, c), s in zip(columns.items(), seeds)}
        elif kind == "sobol":
            # One engine per set: interior, initial, then one per pair of faces (in one
            # space dimension plus time: interior, initial, boundary).
            seeds = torch.randint(0, 2**31 - 1, (2 + len(self.pairs),),
                                  generator=generator).tolist()
            self._engines = {"int": SobolEngine(d, scramble=True, seed=seeds[0]),
                             "ic": SobolEngine(max(d - 1, 1), scramble=True, seed=seeds[1])}
            for i in range(len(self.pairs)):
                self._engines[f"bc{i}"] = SobolEngine(max(d - 1, 1), scramble=True,
                                                      seed=seeds[2 + i])

    def _unit(self, which: str, n: int, dim: int) -> torch.Tensor:  # (n, dim) in [0, 1)
        if n == 0:
            return torch.zeros(0, dim, dtype=torch.float64)
        if dim == 0:  # the ends of an interval in a steady problem: no other coordinate
            return torch.zeros(n, 0, dtype=torch.float64)
        if self.kind == "sobol":
            return self._engines[which].draw(n, dtype=torch.float64)
        return torch.rand(n, dim, generator=self.generator, dtype=torch.float64)

    def _interior(self, n: int) -> torch.Tensor:  # (n, d), float64
        if self.region is not None:
            return self.region.interior(n, lambda m: self._unit("int", m, self.domain.dim))
        return self.domain.interior(self._unit("int", n, self.domain.dim))

    def _region_sets(self) -> Tuple[torch.Tensor, Tuple, Tuple]:
        """The initial set and each piece's points and normals of a region (float64)."""
        reg, cols = self.region, self.region.unit_columns()
        if reg.axes.time:
            initial = reg.initial(self.n_initial, lambda m: self._unit("ic", m, reg.k))
        else:
            initial = torch.zeros(0, reg.dim, dtype=torch.float64)
        drawn = [reg.boundary(j, m, lambda r, j=j: self._unit(f"piece{j}", r, cols[f"piece{j}"]))
                 for j, m in enumerate(self.per_piece)]
        return initial, tuple(p for p, _ in drawn), tuple(n for _, n in drawn)

    def sample(self, residual: Optional[Residual] = None,
               weigh: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Batch:
        """A new draw; with ``residual`` and RAD configured, adaptive interior points.

        Args:
            residual: points (M, d) in the run's dtype and device -> (M,) absolute residual
                of the current network, or None for a plain draw.
            weigh: the candidates' absolute residuals (M,) on the CPU -> their selection
                weights (M,), >= 0; None: RAD's probabilities with (k, c). The chosen points'
                weights are kept in :attr:`last_weights`.
        """
        dom, d = self.domain, self.domain.dim
        if residual is not None and self.rad is not None:
            k, c, oversample = self.rad
            cand = self._interior(oversample * self.n_interior)
            eps = residual(self._to(cand)).detach().cpu()  # computed on the device
            w = rad_probabilities(eps, k, c) if weigh is None else weigh(eps)
            chosen = weighted_select(w, self.n_interior, self.generator)
            interior, self.last_weights = cand[chosen], w[chosen]
        else:
            interior = self._interior(self.n_interior)
            self.last_weights = None
        to = self._to
        if self.region is not None:
            initial, points, normals = self._region_sets()
            return Batch(to(interior), to(initial), (), tuple(to(p) for p in points),
                         tuple(to(n) for n in normals))
        if dom.axes.time:
            initial = dom.initial(self._unit("ic", self.n_initial, d - 1))
        else:
            initial = torch.zeros(0, d, dtype=torch.float64)
        faces = tuple(dom.face_pair(i, self._unit(f"bc{i}", m, d - 1))
                      for i, m in enumerate(self.pairs))
        to = self._to
        return Batch(to(interior), to(initial), tuple(to(f) for f in faces))

    def _to(self, v: torch.Tensor) -> torch.Tensor:  # float64 CPU draw -> run dtype and device
        return v.to(device=self.device, dtype=self.dtype)

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state()}
        if self.kind == "sobol":
            state["sobol_num_generated"] = {k: e.num_generated for k, e in self._engines.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if self.kind == "sobol":
            for k, n in state["sobol_num_generated"].items():
                # "bc": the boundary engine of checkpoints written before faces were numbered
                self._engines["bc0" if k == "bc" else k].reset().fast_forward(n)
