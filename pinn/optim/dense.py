"""Dense quasi-Newton methods: BFGS and the self-scaled BFGS and Broyden updates.

The optimizer keeps the full inverse-Hessian estimate ``H`` (n x n, in the parameters' dtype),
so it suits the small networks with which PINNs reach their best accuracy (a few thousand
parameters); larger networks are refused with the memory they would need (use ``lbfgs``).

Every method shares one update of the inverse Hessian, Al-Baali's self-scaled Broyden family
in inverse form, with s = x_{k+1} - x_k, y = g_{k+1} - g_k, rho = 1 / (y's):

    H+ = (1/tau) * (H - H y y'H / (y'H y) + phi * (y'H y) * v v') + rho * s s',
    v  = rho * s - H y / (y'H y).

``phi = 1, tau = 1`` is BFGS (the same matrix as scipy's product form
(I - rho s y') H (I - rho y s') + rho s s'); the methods differ in tau and phi, computed from

    b = s'B s / (y's) = -step * s'g_k / (y's)   (B s = -step g_k along a quasi-Newton step),
    h = y'H y / (y's),                            a = b h - 1 >= 0.

- ``bfgs``: tau = 1, phi = 1.
- ``ssbfgs``: phi = 1, tau = min(1, 1/b): the self-scaled BFGS of Al-Baali (1998, "Numerical
  experience with a class of self-scaling quasi-Newton algorithms", JOTA 96), eq. (11) of
  Urbán, Stefanou & Pons (J. Comput. Phys. 523, 2025, 113656).
- ``ssbroyden``: the self-scaled Broyden update of Al-Baali & Khalfan (2005, "A wide interval
  for efficient self-scaling quasi-Newton algorithms", Optim. Methods Softw. 20), eqs. (13)-(23)
  of Urbán et al. (their ``SSBroyden2``):

      rho_- = min(1, h (1 - sqrt(a / (1 + a)))),   theta_- = (rho_- - 1) / a,
      theta_+ = 1 / rho_-,                        theta = max(theta_-, min(theta_+, (1-b)/b)),
      sigma = 1 + theta a,   sigma_n = sigma ** (1 / (1 - n)),   rho' = min(1, 1/b),
      tau = min(rho' sigma_n, sigma) if theta <= 0 else rho' min(sigma_n, 1/theta),
      phi = (1 - theta) / sigma.

The equation numbers are those of the authors' paper as listed in their code repository
(jorgeurban/self_scaled_algorithms_pinns).

Each :meth:`DenseQuasiNewton.step` is one iteration: direction -H g, a Moré-Thuente strong-Wolfe
line search (:mod:`pinn.optim.line_search`), the update. The loss and gradient at the accepted
point are kept, so an iteration usually costs one evaluation. When the objective changes (new
collocation points), :meth:`invalidate` drops them and keeps ``H``. A pair with y's <= 0, or a
line search that fails, resets ``H`` to the identity; what happened is in :attr:`last`.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Optional

import torch

from pinn.optim.line_search import strong_wolfe

METHODS = ("bfgs", "ssbfgs", "ssbroyden")


# n x n matrices alive at once at the peak of a dense stage's memory (measured by
# tests/test_optim.py from the process's peak resident memory): H itself, the trainer's copy of
# the last good state for a rollback, and the buffer that a redraw symmetrizes H in and checks
# it by a Cholesky factorization. A checkpoint is written from H in place (no copy).
DENSE_COPIES = 3


def dense_memory_bytes(n: int, element_size: int) -> int:
    """Peak memory of a dense stage's n x n matrices (the rest of a run is far smaller)."""
    return DENSE_COPIES * n * n * element_size


def dense_size_error(method: str, n: int, element_size: int, max_params: int,
                     matrix: str = "a dense inverse Hessian takes") -> Optional[str]:
    """The refusal of a network too large for a method that keeps n x n matrices (None when it
    fits); ``matrix`` names the matrix and its verb (Levenberg-Marquardt: "the normal equations
    J'J take", held with their damped copy and its Cholesky factor: three as well)."""
    if n <= max_params:
        return None
    one = n ** 2 * element_size / 2**30
    peak = dense_memory_bytes(n, element_size) / 2**30
    return (f"optim.qn={method}: the network has {n:,} parameters; {matrix} "
            f"{one:.2f} GiB ({n:,}^2 x {element_size} bytes) and training holds up to "
            f"{DENSE_COPIES} such matrices at once, {peak:.2f} GiB; the limit is "
            f"optim.max_dense_params={max_params:,}. Use optim.qn=lbfgs, a smaller network, or "
            f"raise the limit")


def update_coefficients(method: str, b: float, h: float, n: int) -> Dict[str, float]:
    """tau and phi of ``method`` from b, h and the number of parameters n (see module doc)."""
    if method == "bfgs":
        return {"tau": 1.0, "phi": 1.0}
    if method == "ssbfgs":
        return {"tau": min(1.0, 1.0 / b), "phi": 1.0}
    if method != "ssbroyden":
        raise ValueError(f"optim.qn={method!r} is not allowed: one of lbfgs, {', '.join(METHODS)}")
    a = max(b * h - 1.0, 0.0)  # >= 0 by Cauchy-Schwarz; rounding may make it slightly negative
    rho_minus = min(1.0, h * (1.0 - math.sqrt(a / (1.0 + a))))
    theta_minus = (rho_minus - 1.0) / a if a > 0 else -math.inf
    theta_plus = 1.0 / rho_minus
    theta = max(theta_minus, min(theta_plus, (1.0 - b) / b))
    sigma = 1.0 + theta * a  # >= rho_minus > 0
    sigma_n = max(sigma, 1e-300) ** (1.0 / (1.0 - n)) if n > 1 else 1.0
    rho_prime = min(1.0, 1.0 / b)
    if theta <= 0:
        tau = min(rho_prime * sigma_n, sigma)
    else:
        tau = rho_prime * min(sigma_n, 1.0 / theta)
    return {"tau": tau, "phi": (1.0 - theta) / sigma, "theta": theta}


def update_inverse_hessian(H: torch.Tensor, s: torch.Tensor, y: torch.Tensor, g: torch.Tensor,
                           step: float, method: str) -> Dict[str, float]:
    """Update ``H`` (n, n) in place from the pair (s, y) of a step ``step`` along -H g.

    Args:
        H: inverse-Hessian estimate, symmetric positive definite.
        s, y: (n,) parameter and gradient differences.
        g: (n,) gradient at the start of the step.
        step: the line-search step length (s = -step * H g).
        method: one of :data:`METHODS`.

    Returns:
        the coefficients used (b, h, tau, phi), or ``{"skipped": reason}`` when the pair has
        no positive curvature (H is left unchanged; the caller resets it).
    """
    Hy = torch.mv(H, y)  # (n,)
    # The three products in one host read.
    sy, yHy, sg = torch.stack([torch.dot(s, y), torch.dot(y, Hy), torch.dot(s, g)]).tolist()
    if not (math.isfinite(sy) and sy > 0):
        return {"skipped": f"curvature y's = {sy:.3e} is not positive"}
    rho = 1.0 / sy
    if not (math.isfinite(yHy) and yHy > 0):
        return {"skipped": f"y'Hy = {yHy:.3e} is not positive (H lost definiteness)"}
    h = yHy * rho
    b = -step * sg * rho
    if not (math.isfinite(b) and b > 0):
        return {"skipped": f"s'Bs / y's = {b:.3e} is not positive"}
    c = update_coefficients(method, b, h, H.shape[0])
    tau, phi = c["tau"], c["phi"]
    v = s * rho - Hy / yHy
    H.addr_(Hy, Hy, alpha=-1.0 / yHy)
    if phi != 0.0:
        H.addr_(v, v, alpha=phi * yHy)
    if tau != 1.0:
        H.div_(tau)
    H.addr_(s, s, alpha=rho)
    return {"b": b, "h": h, **c}


class DenseQuasiNewton(torch.optim.Optimizer):
    """One quasi-Newton iteration per :meth:`step`, with the full inverse Hessian.

    Args:
        params: the parameters (all of them are optimized together as one vector).
        method: ``bfgs``, ``ssbfgs`` or ``ssbroyden`` (see the module doc).
        c1, c2: strong-Wolfe constants.
        max_evaluations: loss evaluations one line search may use.
        max_params: refuse larger parameter vectors (H takes n^2 numbers).

    The state (H, the loss and gradient at the current point, counters) lives in
    ``self.state`` under the first parameter, so ``state_dict()`` carries it and a run resumes
    bit-exactly.
    """

    def __init__(self, params: Iterable[torch.Tensor], method: str = "ssbroyden",
                 c1: float = 1e-4, c2: float = 0.9, max_evaluations: int = 25,
                 max_params: int = 10_000):
        if method not in METHODS:
            raise ValueError(f"optim.qn={method!r} is not allowed: one of lbfgs, "
                             f"{', '.join(METHODS)}")
        super().__init__(params, dict(method=method, c1=c1, c2=c2,
                                      max_evaluations=max_evaluations))
        if len(self.param_groups) != 1:
            raise ValueError("DenseQuasiNewton takes one parameter group")
        self._params = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        self.n = sum(p.numel() for p in self._params)
        too_large = dense_size_error(method, self.n, self._params[0].element_size(), max_params)
        if too_large:
            raise ValueError(too_large)
        #: what the last step did: step, evaluations, tau, phi, and "reset" when H was reset
        self.last: Dict[str, object] = {}

    # -- flat views ---------------------------------------------------------------------
    def _flat_params(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self._params])

    def _flat_grad(self) -> torch.Tensor:
        return torch.cat([torch.zeros_like(p).reshape(-1) if p.grad is None
                          else p.grad.detach().reshape(-1) for p in self._params])

    def _set_params(self, x: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self._params:
                k = p.numel()
                p.copy_(x[offset:offset + k].view_as(p))
                offset += k

    @property
    def _state(self) -> dict:
        state = self.state[self._params[0]]
        if "H" not in state:
            p = self._params[0]
            state.update(H=torch.eye(self.n, dtype=p.dtype, device=p.device), f=None, g=None,
                         f_prev=None, iterations=0, evaluations=0, resets=0,
                         updates_since_reset=0)
        return state

    @property
    def updates_since_reset(self) -> int:
        """Curvature updates of H since it was last the identity."""
        return int(self._state["updates_since_reset"])

    def invalidate(self) -> None:
        """The objective changed (new points): forget the loss and gradient, keep H."""
        state = self._state
        state["f"], state["g"], state["f_prev"] = None, None, None

    def reset_hessian(self) -> None:
        state = self._state
        state["H"] = torch.eye(self.n, dtype=state["H"].dtype, device=state["H"].device)
        state["resets"] += 1
        state["updates_since_reset"] = 0
        state["f_prev"] = None  # the next first step is again about 1 long (see step)

    def ensure_positive_definite(self) -> bool:
        """Symmetrize H and check it by a Cholesky factorization; reset it if that fails.
        Returns True when H was reset."""
        state = self._state
        H = state["H"]
        # One n x n buffer for both the symmetrized matrix and its Cholesky factor (see
        # DENSE_COPIES).
        work = torch.add(H, H.mT)
        work.mul_(0.5)
        H.copy_(work)
        # LAPACK writes its factor column-major: work.mT is that layout (no hidden copy).
        _, info = torch.linalg.cholesky_ex(H, out=(work.mT, torch.empty(
            (), dtype=torch.int32, device=H.device)))
        del work
        if info.item() != 0:
            self.reset_hessian()
            return True
        return False

    @staticmethod
    def _loss_tensor(value: float) -> torch.Tensor:
        """The loss as the step returns it: float64, the value the closure returned (a
        Python float holds a float64 exactly; torch.tensor(float) would round to float32)."""
        return torch.tensor(value, dtype=torch.float64)

    def _evaluate(self, closure: Callable[[], torch.Tensor],
                  direction: Optional[torch.Tensor] = None):
        """The loss and flat gradient; with ``direction``, also the derivative along it: the
        numbers in one host read."""
        with torch.enable_grad():
            loss = closure()
        self._state["evaluations"] += 1
        g = self._flat_grad()
        if direction is None:
            return float(loss), g
        f, slope = torch.stack([loss.detach().double(),
                                torch.dot(g, direction).double()]).tolist()
        return f, g, slope

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> Optional[torch.Tensor]:  # type: ignore[override]
        """One iteration. ``closure`` zeroes the gradients, computes the loss, calls
        ``backward()`` and returns the loss. Returns the loss at the new point; on a failed
        line search the parameters stay where they were and ``self.last["failed"]`` says why.
        """
        group = self.param_groups[0]
        state = self._state
        self.last = {}
        x = self._flat_params()
        if state["f"] is None:
            state["f"], state["g"] = self._evaluate(closure)
        f, g = state["f"], state["g"]
        H = state["H"]
        d = -torch.mv(H, g)  # (n,)
        finite, d0 = torch.stack([torch.isfinite(g).all().to(g.dtype),
                                  torch.dot(g, d)]).tolist()  # one host read
        if not math.isfinite(f) or not finite:
            self.last["failed"] = "non-finite loss or gradient at the current point"
            return self._loss_tensor(f)
        if not d0 < 0:
            self.reset_hessian()  # H lost definiteness: steepest descent this time
            self.last["reset"] = f"not a descent direction (g'd = {d0:.3e})"
            H = state["H"]
            d, d0 = -g.clone(), -float(torch.dot(g, g))
        # First trial step: from the last decrease, as scipy's BFGS (which starts with
        # f_prev = f + |g|/2: a first step of length about 1); the same with a fresh H, and 1
        # after a change of objective.
        f_prev = state["f_prev"]
        if state["updates_since_reset"] == 0 and f_prev is None:
            f_prev = f + float(torch.linalg.vector_norm(g)) / 2
        step0 = 1.0
        if f_prev is not None and d0 != 0:
            step0 = min(1.0, 1.01 * 2 * (f - f_prev) / d0)
            if step0 <= 0:
                step0 = 1.0
        last_g = {}

        def phi(alpha: float):
            self._set_params(x + alpha * d)
            fa, ga, slope = self._evaluate(closure, d)
            last_g["g"] = ga
            return fa, slope

        result = strong_wolfe(phi, f, d0, step=step0, c1=group["c1"], c2=group["c2"],
                              max_evaluations=group["max_evaluations"])
        self.last.update(step=result.step, evaluations=result.evaluations)
        if not result.ok:
            self._set_params(x)  # stay at the last accepted point
            self.last["failed"] = f"line search: {result.message}"
            return self._loss_tensor(f)
        g_new = last_g["g"]
        s = result.step * d
        info = update_inverse_hessian(H, s, g_new - g, g, result.step, group["method"])
        if "skipped" in info:
            self.reset_hessian()
            self.last["reset"] = info["skipped"]
        else:
            state["updates_since_reset"] += 1
            self.last.update({k: v for k, v in info.items() if k in ("tau", "phi")})
        state["f_prev"], state["f"], state["g"] = f, result.value, g_new
        state["iterations"] += 1
        return self._loss_tensor(result.value)
