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

- :class:`HardInitial` imposes the initial condition exactly (Lagaris, Likas & Fotiadis,
  "Artificial neural networks for solving ordinary and partial differential equations", IEEE
  TNN 9, 1998; Lu et al., "Physics-informed neural networks with hard constraints for inverse
  design", SIAM J. Sci. Comput. 43, 2021):

      u = u0(x) + tau N(x, t)                               (first order in time)
      u = u0(x) + (t - t_min) v0(x) + tau^2 N(x, t)           (second order: u_t(x, t_min) = v0)

  with tau = (t - t_min) / (t_max - t_min) and N the network. The initial loss term then
  vanishes identically and is left out of the loss.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import Tensor, nn


class Embedding(nn.Module):
    """Fixed sinusoidal features of the normalized inputs; see the module docstring.

    Args:
        periodic_harmonics: K > 0 makes the features exactly periodic in x (harmonics 1..K of
            the domain's period); 0 keeps x^ as a feature.
        fourier_features: M random Fourier features (0: none).
        fourier_sigma: standard deviation of their frequencies (in units of the normalized
            inputs, which span [-1, 1]).
        generator: draws the random frequencies (seeded by the caller).
    """

    def __init__(self, periodic_harmonics: int = 0, fourier_features: int = 0,
                 fourier_sigma: float = 1.0, generator: Optional[torch.Generator] = None):
        super().__init__()
        if periodic_harmonics < 0 or fourier_features < 0:
            raise ValueError("periodic_harmonics and fourier_features must be >= 0")
        rows = [[k * math.pi, 0.0] for k in range(1, periodic_harmonics + 1)]
        A = torch.tensor(rows, dtype=torch.float64).reshape(-1, 2)
        if fourier_features:
            B = torch.randn(fourier_features, 2, generator=generator,
                            dtype=torch.float64) * float(fourier_sigma)
            if periodic_harmonics:
                B[:, 0] = torch.round(B[:, 0] / math.pi) * math.pi
            A = torch.cat([A, B])
        self.periodic = periodic_harmonics > 0
        # (F, 2) frequencies; a buffer, so that checkpoints carry the drawn features exactly.
        self.register_buffer("freqs", A)
        # Normalized inputs kept as features: t^ always, x^ unless periodic.
        self.passthrough: Tuple[int, ...] = (1,) if self.periodic else (0, 1)

    @property
    def n_features(self) -> int:
        return len(self.passthrough) + 2 * self.freqs.shape[0]

    def forward(self, z: Tensor) -> Tensor:  # (N, 2) -> (N, n_features)
        phase = z @ self.freqs.to(z.dtype).t()  # (N, F)
        return torch.cat([z[:, list(self.passthrough)], torch.cos(phase), torch.sin(phase)], 1)

    def taylor_rows(self, z: Tensor, scale: Tensor, firsts: Tuple[int, ...],
                    seconds: Tuple[int, ...]) -> Tensor:
        """The features and their input derivatives as rows (n_features, C, N).

        Args:
            z: (N, 2) normalized inputs.
            scale: (2,) dz/d(x, t) of the normalization.
            firsts, seconds: input columns (0: x, 1: t) of the first- and second-derivative
                channels, in the engine's order.

        Returns:
            rows [value; d/dv for v in firsts; d2/dv2 for v in seconds], each (n_features, N).
        """
        A = self.freqs.to(z.dtype)
        phase = (z @ A.t()).t()  # (F, N)
        cos, sin = torch.cos(phase), torch.sin(phase)
        n = z.shape[0]
        value = torch.cat([z[:, list(self.passthrough)].t(), cos, sin])
        channels = [value]
        for v in firsts:
            a = (A[:, v] * scale[v])[:, None]  # (F, 1): d phase / d v
            through = torch.stack([scale[v].expand(n) if p == v else z.new_zeros(n)
                                   for p in self.passthrough])
            channels.append(torch.cat([through, -sin * a, cos * a]))
        for v in seconds:
            a2 = ((A[:, v] * scale[v]) ** 2)[:, None]
            through = z.new_zeros(len(self.passthrough), n)
            channels.append(torch.cat([through, -cos * a2, -sin * a2]))
        return torch.stack(channels, 1)


class HardInitial(nn.Module):
    """u = u0(x) [+ (t - t_min) v0(x)] + tau^p N(x, t); see the module docstring.

    Args:
        initial: x (N, 1) -> u0 (N, n_out), a closed-form function without parameters.
        initial_velocity: x -> v0 (N, n_out) for second order in time, else None.
        t_min, t_max: the time interval.
    """

    def __init__(self, initial: Callable[[Tensor], Tensor],
                 initial_velocity: Optional[Callable[[Tensor], Tensor]], t_min: float,
                 t_max: float):
        super().__init__()
        self.initial = initial
        self.initial_velocity = initial_velocity
        self.t_min = float(t_min)
        self.inv_span = 1.0 / (float(t_max) - float(t_min))
        self.power = 2 if initial_velocity is not None else 1

    def forward(self, xt: Tensor, N: Tensor) -> Tensor:  # (N, 2), (N, n_out) -> (N, n_out)
        x, t = xt[:, :1], xt[:, 1:]
        tau = (t - self.t_min) * self.inv_span
        out = self.initial(x) + tau ** self.power * N
        if self.initial_velocity is not None:
            out = out + (t - self.t_min) * self.initial_velocity(x)
        return out

    def _lift(self, x: Tensor, want_x: bool, want_xx: bool) -> Dict[str, Tensor]:
        """g(x) = u0(x) (and v0(x)) with their x-derivatives, by autograd on the closed-form
        functions; constants with respect to the network's parameters."""
        fns = {"u0": self.initial}
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
        phi = tau ** p  # (N, 1)
        dphi = p * tau ** (p - 1) * self.inv_span
        ddphi = (p * (p - 1) * self.inv_span ** 2) * (tau ** (p - 2) if p >= 2 else 0 * tau)
        v0 = g.get("v0")
        N = d["U"]
        out = {"U": g["u0"] + phi * N + (s * v0 if v0 is not None else 0)}
        if "Ux" in needed:
            gx = g["u0_x"] + (s * g["v0_x"] if v0 is not None else 0)
            out["Ux"] = gx + phi * d["Ux"]
        if "Uxx" in needed:
            gxx = g["u0_xx"] + (s * g["v0_xx"] if v0 is not None else 0)
            out["Uxx"] = gxx + phi * d["Uxx"]
        if "Ut" in needed:
            out["Ut"] = (v0 if v0 is not None else 0) + dphi * N + phi * d["Ut"]
        if "Utt" in needed:
            out["Utt"] = ddphi * N + 2 * dphi * d["Ut"] + phi * d["Utt"]
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


def network_request(needed: Iterable[str]) -> set:
    """The network derivatives that :meth:`HardInitial.apply_to_derivatives` needs for
    ``needed``: the same, plus ``Ut`` when ``Utt`` is asked for."""
    needed = set(needed) | {"U"}
    return needed | ({"Ut"} if "Utt" in needed else set())


__all__ = ["Embedding", "HardInitial", "check_periodic_lift", "network_request"]
