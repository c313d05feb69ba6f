"""Input embeddings and an output transform: what a network is told about a problem's geometry.

Both are fixed maps (no trainable parameters) around the MLP of :mod:`pinn.nn.mlp`, so that
every derivative engine sees them: :mod:`pinn.derivatives` differentiates through them with
autograd, :mod:`pinn.taylor` pushes their closed-form derivatives forward.

- :class:`Embedding` maps the normalized inputs (x^, t^) in [-1, 1]^2 to features

      [x^ (unless periodic), t^, cos(A z), sin(A z)],     z = (x^, t^),

  with a fixed frequency matrix A (F, 2):

  * periodic in x (Dong & Ni, "A method for representing periodic functions and enforcing
    exactly periodic boundary conditions with deep neural networks", J. Comput. Phys. 435,
    110242, 2021; used so in Wang, Sankaran, Wang & Perdikaris, "An expert's guide to training
    physics-informed neural networks", 2023, sec. 5.1): rows (k pi, 0) for k = 1..K and x^
    left out, so the network is exactly periodic in x with the domain's period, and so are all
    its x-derivatives;
  * random Fourier features (Tancik et al., "Fourier features let networks learn high
    frequency functions in low dimensional domains", NeurIPS 2020; Wang, Wang & Perdikaris,
    "On the eigenvector bias of Fourier feature networks", CMAME 384, 113938, 2021): M rows
    drawn from N(0, sigma^2) with the run's seed. With the periodic embedding their
    x-frequencies are rounded to whole multiples of pi, so that every feature keeps the period.

  On points with more columns (``n_in``, one per axis) the same features are built from all
  of them: A is (F, n_in), the Fourier rows draw a frequency per column, and each periodic
  axis (``periodic_axes``) gets its own harmonics and leaves its own column out.

- :class:`HardInitial` imposes the initial condition exactly (Lagaris, Likas & Fotiadis,
  "Artificial neural networks for solving ordinary and partial differential equations", IEEE
  TNN 9, 1998; Lu et al., "Physics-informed neural networks with hard constraints for inverse
  design", SIAM J. Sci. Comput. 43, 2021):

      u = u0(x) + tau N(x, t)                               (first order in time)
      u = u0(x) + (t - t_min) v0(x) + tau^2 N(x, t)           (second order: u_t(x, t_min) = v0)

  with tau = (t - t_min) / (t_max - t_min) and N the network. The initial loss term then
  vanishes identically and is left out of the loss.

  With a boundary factor (homogeneous Dirichlet conditions, u = 0 at x_min and x_max; Lagaris
  et al. 1998; Sukumar & Srivastava, "Exact imposition of boundary conditions with distance
  functions in physics-informed deep neural networks", CMAME 389, 114333, 2022), N is
  multiplied by B(x) = (x - x_min)(x_max - x) / (L/2)^2 (L = x_max - x_min; B = 1 mid-domain):

      u = u0(x) [+ (t - t_min) v0(x)] + tau^p B(x) N(x, t),     or u = B(x) N alone,

  exact on both ends when u0 and v0 vanish there; the boundary term is then left out too.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn


class Embedding(nn.Module):
    """Fixed sinusoidal features of the normalized inputs; see the module docstring.

    Args:
        periodic_harmonics: K > 0 makes the features exactly periodic along the columns
            ``periodic_axes`` (harmonics 1..K of the domain's period along each); 0 keeps every
            normalized input as a feature.
        fourier_features: M random Fourier features (0: none).
        fourier_sigma: standard deviation of their frequencies (in units of the normalized
            inputs, which span [-1, 1]).
        generator: draws the random frequencies (seeded by the caller).
        n_in: input columns (2 for (x, t); as many as the problem's axes).
        periodic_axes: the columns the periodic harmonics make periodic (x, column 0, unless
            told).
    """

    def __init__(self, periodic_harmonics: int = 0, fourier_features: int = 0,
                 fourier_sigma: float = 1.0, generator: Optional[torch.Generator] = None,
                 n_in: int = 2, periodic_axes: Sequence[int] = (0,)):
        super().__init__()
        if periodic_harmonics < 0 or fourier_features < 0:
            raise ValueError("periodic_harmonics and fourier_features must be >= 0")
        periodic_axes = sorted(set(int(j) for j in periodic_axes)) if periodic_harmonics else []
        if any(not 0 <= j < n_in for j in periodic_axes):
            raise ValueError(f"periodic_axes {periodic_axes} must be columns 0..{n_in - 1}")
        rows = []
        for j in periodic_axes:  # harmonics of axis j: k pi along j, 0 along the others
            for k in range(1, periodic_harmonics + 1):
                row = [0.0] * n_in
                row[j] = k * math.pi
                rows.append(row)
        A = torch.tensor(rows, dtype=torch.float64).reshape(-1, n_in)
        if fourier_features:
            B = torch.randn(fourier_features, n_in, generator=generator,
                            dtype=torch.float64) * float(fourier_sigma)
            for j in periodic_axes:
                B[:, j] = torch.round(B[:, j] / math.pi) * math.pi
            A = torch.cat([A, B])
        self.n_in = n_in
        self.periodic = bool(periodic_axes)
        # (F, n_in) frequencies; a buffer, so that checkpoints carry the drawn features exactly.
        self.register_buffer("freqs", A)
        # Normalized inputs kept as features: every column but the periodic ones.
        self.passthrough: Tuple[int, ...] = tuple(j for j in range(n_in)
                                                  if j not in periodic_axes)

    @property
    def n_features(self) -> int:
        return len(self.passthrough) + 2 * self.freqs.shape[0]

    def forward(self, z: Tensor) -> Tensor:  # (N, n_in) -> (N, n_features)
        phase = z @ self.freqs.to(z.dtype).t()  # (N, F)
        return torch.cat([z[:, list(self.passthrough)], torch.cos(phase), torch.sin(phase)], 1)

    def taylor_rows(self, z: Tensor, scale: Tensor, firsts: Tuple[int, ...],
                    seconds: Tuple[int, ...]) -> Tensor:
        """The features and their pure input derivatives as rows (n_features, C, N).

        Args:
            z: (N, n_in) normalized inputs.
            scale: (n_in,) dz/d(input) of the normalization, per column.
            firsts, seconds: input columns of the first- and second-derivative channels, in
                the engine's order.

        Returns:
            rows [value; d/dv for v in firsts; d2/dv2 for v in seconds], each (n_features, N).
        """
        value, cos, sin = self._features(z)
        channels = [value]
        channels += [self._pure_row(z, scale, cos, sin, v, 1) for v in firsts]
        channels += [self._pure_row(z, scale, cos, sin, v, 2) for v in seconds]
        return torch.stack(channels, 1)

    def taylor_jets(self, z: Tensor, scale: Tensor, axes: Tuple[int, ...],
                    orders: Tuple[int, ...], mixed: Tuple[Tuple[int, int], ...]) -> Tensor:
        """The features and their input derivatives in the layout of the Taylor engine's jets
        (:class:`pinn.taylor.structure.JetPlan`), as rows (n_features, C, N).

        Args:
            z: (N, n_in) normalized inputs.
            scale: (n_in,) dz/d(input) of the normalization, per column.
            axes: input columns; orders: the highest order along each (1 to 4).
            mixed: (p, q) positions in ``axes``: the mixed second derivatives.

        Returns:
            rows [value; d^k/dv^k for k = 1..K per column v of ``axes``; d2/(dv dw) per mixed
            pair], each (n_features, N).
        """
        value, cos, sin = self._features(z)
        channels = [value]
        for v, order in zip(axes, orders):
            channels += [self._pure_row(z, scale, cos, sin, v, k) for k in range(1, order + 1)]
        A = self.freqs.to(z.dtype)
        for p, q in mixed:  # d2 cos(phase) = -a_v a_w cos(phase); the passthrough is linear
            v, w = axes[p], axes[q]
            a = (A[:, v] * scale[v] * A[:, w] * scale[w])[:, None]  # (F, 1)
            through = z.new_zeros(len(self.passthrough), z.shape[0])
            channels.append(torch.cat([through, -cos * a, -sin * a]))
        return torch.stack(channels, 1)

    def _features(self, z: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(the features (n_features, N), cos and sin of the phase (F, N)) at ``z`` (N, n_in)."""
        A = self.freqs.to(z.dtype)
        phase = (z @ A.t()).t()  # (F, N)
        cos, sin = torch.cos(phase), torch.sin(phase)
        return torch.cat([z[:, list(self.passthrough)].t(), cos, sin]), cos, sin

    def _pure_row(self, z: Tensor, scale: Tensor, cos: Tensor, sin: Tensor, v: int,
                  k: int) -> Tensor:
        """The k-th derivative (k = 1..4) of the features along column v, (n_features, N):
        a^k times the k-th derivatives of cos and sin at the phase (a = d phase / dv), and the
        passthrough's derivative for k = 1."""
        A = self.freqs.to(z.dtype)
        a = (A[:, v] * scale[v])[:, None]  # (F, 1)
        through = z.new_zeros(len(self.passthrough), z.shape[0])  # (P, N): d^k z[p] / dv^k
        if k == 1 and v in self.passthrough:
            through[self.passthrough.index(v)] = scale[v]
        ak = a if k == 1 else a ** k
        if k == 1:  # cos' = -sin, sin' = cos
            return torch.cat([through, -sin * ak, cos * ak])
        if k == 2:
            return torch.cat([through, -cos * ak, -sin * ak])
        if k == 3:
            return torch.cat([through, sin * ak, -cos * ak])
        return torch.cat([through, cos * ak, sin * ak])


class HardInitial(nn.Module):
    """u = u0(x) [+ (t - t_min) v0(x)] + tau^p B(x) N(x, t); see the module docstring.

    Args:
        initial: x (N, 1) -> u0 (N, n_out), a closed-form function without parameters; None
            for no initial condition (then p = 0: u = B(x) N, with ``boundary``).
        initial_velocity: x -> v0 (N, n_out) for second order in time, else None.
        t_min, t_max: the time interval.
        boundary: (x_min, x_max) to impose u = 0 at both ends by the factor B(x), or None.
    """

    def __init__(self, initial: Optional[Callable[[Tensor], Tensor]],
                 initial_velocity: Optional[Callable[[Tensor], Tensor]], t_min: float,
                 t_max: float, boundary: Optional[Tuple[float, float]] = None):
        super().__init__()
        self.initial = initial
        self.initial_velocity = initial_velocity if initial is not None else None
        self.t_min = float(t_min)
        self.inv_span = 1.0 / (float(t_max) - float(t_min))
        self.power = 0 if initial is None else 2 if self.initial_velocity is not None else 1
        self.boundary = None if boundary is None else (float(boundary[0]), float(boundary[1]))
        if self.boundary is not None:
            half = 0.5 * (self.boundary[1] - self.boundary[0])
            self.inv_half_sq = 1.0 / (half * half)

    @property
    def imposes(self) -> Tuple[str, ...]:
        """The loss terms this transform satisfies by construction: ``ic`` and/or ``bc``."""
        return (("ic",) if self.initial is not None else ()) + (
            ("bc",) if self.boundary is not None else ())

    def _space(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """B(x), B'(x), B''(x), each (N, 1); ones and zeros without a boundary factor."""
        if self.boundary is None:
            one = torch.ones_like(x)
            return one, 0 * x, 0 * x
        a, b = self.boundary
        c = self.inv_half_sq
        return c * (x - a) * (b - x), c * (a + b - 2 * x), torch.full_like(x, -2 * c)

    def forward(self, xt: Tensor, N: Tensor) -> Tensor:  # (N, 2), (N, n_out) -> (N, n_out)
        x, t = xt[:, :1], xt[:, 1:]
        tau = (t - self.t_min) * self.inv_span
        factor = tau ** self.power if self.power else None
        if self.boundary is not None:
            B = self._space(x)[0]
            factor = B if factor is None else factor * B
        out = N if factor is None else factor * N
        if self.initial is not None:
            out = self.initial(x) + out
        if self.initial_velocity is not None:
            out = out + (t - self.t_min) * self.initial_velocity(x)
        return out

    def _lift(self, x: Tensor, want_x: bool, want_xx: bool) -> Dict[str, Tensor]:
        """g(x) = u0(x) (and v0(x)) with their x-derivatives, by autograd on the closed-form
        functions; constants with respect to the network's parameters."""
        fns = {} if self.initial is None else {"u0": self.initial}
        if self.initial_velocity is not None:
            fns["v0"] = self.initial_velocity
        out: Dict[str, Tensor] = {}
        with torch.enable_grad():
            xg = x.detach().requires_grad_(want_x or want_xx)
            for name, fn in fns.items():
                g = fn(xg)
                out[name] = g.detach()
                if not (want_x or want_xx):
                    continue
                firsts, seconds = [], []
                for k in range(g.shape[1]):
                    gk = g[:, k:k + 1]
                    if not gk.requires_grad:  # a constant column
                        firsts.append(torch.zeros_like(x))
                        seconds.append(torch.zeros_like(x))
                        continue
                    (d1,) = torch.autograd.grad(gk.sum(), xg, create_graph=want_xx,
                                                retain_graph=True)
                    firsts.append(d1.detach())
                    if want_xx:
                        if d1.requires_grad:
                            (d2,) = torch.autograd.grad(d1.sum(), xg, retain_graph=True)
                        else:
                            d2 = torch.zeros_like(x)
                        seconds.append(d2.detach())
                out[name + "_x"] = torch.cat(firsts, 1)
                if want_xx:
                    out[name + "_xx"] = torch.cat(seconds, 1)
        return out

    def apply_to_derivatives(self, x: Tensor, t: Tensor, d: Dict[str, Tensor],
                             needed: Iterable[str]) -> Dict[str, Tensor]:
        """The transform's output and input derivatives from those of the network, d (keys of
        :data:`pinn.derivatives.DERIVATIVE_KEYS`, each (N, n_out)), by the product rule.

        ``d`` must hold N and every derivative that ``needed`` requires, and ``Ut`` when
        ``Utt`` is needed.
        """
        needed = set(needed) | {"U"}
        g = self._lift(x, "Ux" in needed or "Uxx" in needed, "Uxx" in needed)
        s = t - self.t_min
        tau = s * self.inv_span
        p = self.power
        phi = tau ** p if p else torch.ones_like(tau)  # (N, 1)
        dphi = p * tau ** (p - 1) * self.inv_span if p else 0 * tau
        ddphi = (p * (p - 1) * self.inv_span ** 2) * (tau ** (p - 2) if p >= 2 else 0 * tau)
        B, dB, ddB = self._space(x)
        # F = phi(t) B(x) multiplies the network: the product rule with F's derivatives.
        F, Fx, Fxx, Ft, Ftt = phi * B, phi * dB, phi * ddB, dphi * B, ddphi * B
        u0 = g.get("u0")
        v0 = g.get("v0")
        N = d["U"]
        out = {"U": (u0 if u0 is not None else 0) + F * N + (s * v0 if v0 is not None else 0)}
        boundary = self.boundary is not None
        if "Ux" in needed:
            gx = (g["u0_x"] if u0 is not None else 0) + (s * g["v0_x"] if v0 is not None else 0)
            out["Ux"] = gx + F * d["Ux"] + (Fx * N if boundary else 0)
        if "Uxx" in needed:
            gxx = ((g["u0_xx"] if u0 is not None else 0)
                   + (s * g["v0_xx"] if v0 is not None else 0))
            out["Uxx"] = gxx + F * d["Uxx"] + (Fxx * N + 2 * Fx * d["Ux"] if boundary else 0)
        if "Ut" in needed:
            out["Ut"] = (v0 if v0 is not None else 0) + Ft * N + F * d["Ut"]
        if "Utt" in needed:
            out["Utt"] = Ftt * N + 2 * Ft * d["Ut"] + F * d["Utt"]
        return out


def check_periodic_lift(transform: HardInitial, x_min: float, x_max: float,
                        rtol: float = 1e-8) -> None:
    """Refuse a hard initial condition on a periodic network when the initial value (or its
    x-derivative, or the initial velocity) differs at the two ends: u = u0 + tau N would then
    carry that jump at every time, and no network could make u periodic.

    Raises:
        ValueError: one line naming the keys and the two values.
    """
    ends = torch.tensor([[x_min], [x_max]], dtype=torch.float64)
    g = transform._lift(ends, True, False)
    for name, label in (("u0", "u"), ("u0_x", "u_x"), ("v0", "u_t"), ("v0_x", "u_xt")):
        if name not in g:
            continue
        a, b = g[name][0], g[name][1]
        scale = 1.0 + float(torch.maximum(a.abs(), b.abs()).max())
        gap = float((a - b).abs().max())
        if gap > rtol * scale:
            raise ValueError(
                f"model.hard_initial=true with model.periodic=true: the initial {label} is "
                f"{a.tolist()} at x={x_min:g} but {b.tolist()} at x={x_max:g}, so "
                f"u = u0 + tau N cannot be periodic; drop one of the two (the initial "
                f"condition then stays a loss term)")


def check_hard_boundary(pde, transform: HardInitial, rtol: float = 1e-12) -> None:
    """Refuse ``model.hard_boundary=true`` where the factor B(x) cannot hold: a problem whose
    boundary condition is not Dirichlet with u = 0 at both ends, or (with ``hard_initial``)
    an initial value or velocity that is not 0 at the ends.

    Raises:
        ValueError: one line naming the key, what the problem has and what is needed.
    """
    key = "model.hard_boundary=true"
    if pde.boundary_kind != "dirichlet":
        raise ValueError(f"{key} imposes u = 0 at both ends; pde={pde.name} has "
                         f"{pde.boundary_kind} boundary conditions (it needs dirichlet)")
    t = torch.linspace(pde.t_min, pde.t_max, 17, dtype=torch.float64)[:, None]
    for side in ("left", "right"):
        g = pde.boundary(side, t)
        if float(g.abs().max()) > rtol:
            raise ValueError(f"{key} imposes u = 0 at both ends; pde.boundary.{side} of "
                             f"pde={pde.name} is not 0 (max |value| {float(g.abs().max()):.3g})")
    if transform.initial is None:
        return
    ends = torch.tensor([[pde.x_min], [pde.x_max]], dtype=torch.float64)
    g = transform._lift(ends, False, False)
    for name, label in (("u0", "pde.initial"), ("v0", "pde.initial_velocity")):
        if name in g and float(g[name].abs().max()) > rtol * (1.0 + float(g[name].abs().max())):
            raise ValueError(f"{key} with model.hard_initial=true: {label} is "
                             f"{g[name].reshape(-1).tolist()} at x = {pde.x_min:g}, "
                             f"{pde.x_max:g}, not 0, so u could not be 0 there at t = t_min")


def network_request(needed: Iterable[str], transform: Optional[HardInitial] = None) -> set:
    """The network derivatives that :meth:`HardInitial.apply_to_derivatives` needs for
    ``needed``: the same, plus ``Ut`` when ``Utt`` is asked for, and ``Ux`` when ``Uxx`` is
    and ``transform`` has a boundary factor."""
    needed = set(needed) | {"U"}
    extra = {"Ut"} if "Utt" in needed else set()
    if transform is not None and transform.boundary is not None and "Uxx" in needed:
        extra.add("Ux")
    return needed | extra


__all__ = ["Embedding", "HardInitial", "check_hard_boundary", "check_periodic_lift",
           "network_request"]
