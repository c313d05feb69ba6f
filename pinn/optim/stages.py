"""The quasi-Newton stage as the trainer sees it: one interface for torch's L-BFGS and the
dense methods of :mod:`pinn.optim.dense` (Levenberg-Marquardt, :mod:`pinn.optim.gauss_newton`,
takes the normal equations instead: see :meth:`pinn.training.Optimizers.qn_step`).

A stage takes ``evaluate()``, which computes the loss on the current points, calls
``backward()`` and returns ``(total, terms)``, and does one iteration per :meth:`step`, returning
the loss terms it reports for that iteration. :meth:`invalidate` says the objective changed
(new points, recalibrated batch statistics); ``state_dict`` holds everything needed to resume.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

from pinn.device import as_floats
from pinn.optim.dense import METHODS, DenseQuasiNewton, dense_size_error
from pinn.optim.gauss_newton import LevenbergMarquardt

QN_METHODS = ("lbfgs", *METHODS, "lm")

Evaluate = Callable[[], Tuple[torch.Tensor, Dict[str, torch.Tensor]]]


def _values(total: torch.Tensor, terms: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """The loss terms as numbers: one host read."""
    return as_floats({"total": total, **terms})


class LBFGSStage:
    """torch's L-BFGS with a strong-Wolfe line search, one iteration per step.

    torch's ``LBFGS.step`` first evaluates the loss at the current parameters, which the
    previous iteration's line search has usually just evaluated (it keeps nothing across calls).
    The closure therefore remembers its last evaluation and, when the parameters are bitwise the
    same and the objective unchanged, hands back that loss and gradient: the same numbers, about
    half the evaluations. Reported terms are those at the start of the iteration.
    """

    name = "lbfgs"
    reuse_evaluations = True  # tests turn it off to compare trajectories

    def __init__(self, params: List[torch.Tensor], lr: float, history: int):
        # max_iter=1: one iteration per step() call, logged and checkpointed like an Adam
        # step. max_eval bounds that iteration's line search (its default, 5/4 of max_iter,
        # would leave no line-search evaluations at all).
        self.optimizer = torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=25,
                                           history_size=history, line_search_fn="strong_wolfe",
                                           tolerance_grad=1e-12, tolerance_change=1e-15)
        self.params = [p for p in params if p.requires_grad]
        self._last: Optional[dict] = None
        self._new_objective = False  # see invalidate
        self.last: Dict[str, object] = {}

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def invalidate(self) -> None:
        """The objective changed: forget the last evaluation, and make the next iteration add
        no curvature pair. torch's L-BFGS builds the pair of an iteration from the gradient
        it kept from the previous one (``prev_flat_grad``); across a change of objective that
        would be y = g_new(x_k+1) - g_old(x_k), a difference of two functions' gradients. The
        first iteration on the new objective therefore sets ``prev_flat_grad`` to its own
        gradient (y = 0: torch skips the pair) and steps with the memory kept; the pairs
        after it are built from one objective."""
        self._last = None
        self._new_objective = True

    @property
    def evaluations(self) -> int:
        """Loss and gradient evaluations so far (handed-back ones not counted)."""
        return int(self.optimizer.state[self.params[0]].get("evaluations", 0))

    def step(self, evaluate: Evaluate) -> Dict[str, float]:
        seen: Dict[str, float] = {}
        params = self.params

        def closure():
            last = self._last
            if (self.reuse_evaluations and last is not None
                    and all(torch.equal(p, q) for p, q in zip(params, last["params"]))):
                for p, g in zip(params, last["grads"]):
                    p.grad = None if g is None else g.clone()
                total, terms = last["total"], last["terms"]
            else:
                self.optimizer.zero_grad(set_to_none=True)
                total, terms = evaluate()
                # Kept in torch's per-parameter state, so that state_dict() carries it.
                state = self.optimizer.state[params[0]]
                state["evaluations"] = state.get("evaluations", 0) + 1
                self._last = {
                    "params": [p.detach().clone() for p in params],
                    "grads": [None if p.grad is None else p.grad.detach().clone()
                              for p in params],
                    "total": total.detach(),
                    "terms": {k: v.detach() for k, v in terms.items()}}
            if not seen:  # terms at the start of the iteration
                seen.update(_values(total, terms))
                state = self.optimizer.state[params[0]]
                if self._new_objective and state.get("prev_flat_grad") is not None:
                    # Read by torch after this first evaluation: see invalidate().
                    state["prev_flat_grad"] = torch.cat([
                        torch.zeros_like(p).reshape(-1) if p.grad is None
                        else p.grad.reshape(-1) for p in params])
                self._new_objective = False
            elif not torch.isfinite(total):
                seen["total"] = float("nan")  # a poisoned line search: recover like Adam
            return total

        self.optimizer.step(closure)
        return seen

    def state_dict(self) -> dict:
        return {**self.optimizer.state_dict(), "new_objective": self._new_objective}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self._new_objective = bool(state.pop("new_objective", False))
        self.optimizer.load_state_dict(state)
        self._last = None


class DenseStage:
    """BFGS, SSBFGS or SSBroyden with the full inverse Hessian (:class:`DenseQuasiNewton`).

    Reported terms are those at the accepted point of the iteration (the line search's last
    evaluation), or at the unchanged point when the line search failed.

    A failed line search leaves the parameters where they were. With ``on_failure="reset"``
    the inverse Hessian is reset to the identity (``last["reset"]``) and the next iteration
    tries again from a steepest-descent direction; a failure with a freshly reset H (nothing
    left to reset) or with ``on_failure="stop"`` sets ``last["stalled"]``: the stage cannot
    progress, and the trainer ends training.
    """

    def __init__(self, params: List[torch.Tensor], method: str, c1: float, c2: float,
                 max_evaluations: int, max_params: int, on_failure: str = "reset"):
        if on_failure not in ("reset", "stop"):
            raise ValueError(f"optim.on_line_search_failure={on_failure!r} is not allowed: one "
                             "of reset, stop")
        self.name = method
        self.on_failure = on_failure
        self.optimizer = DenseQuasiNewton(params, method=method, c1=c1, c2=c2,
                                          max_evaluations=max_evaluations,
                                          max_params=max_params)
        self._terms: Optional[Dict[str, float]] = None  # at the current point

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def last(self) -> Dict[str, object]:
        return self.optimizer.last

    def invalidate(self) -> None:
        self.optimizer.invalidate()
        self._terms = None

    @property
    def evaluations(self) -> int:
        """Loss and gradient evaluations so far."""
        return int(self.optimizer._state["evaluations"])

    def ensure_positive_definite(self) -> bool:
        return self.optimizer.ensure_positive_definite()

    def step(self, evaluate: Evaluate) -> Dict[str, float]:
        evaluations: List[Dict[str, float]] = []

        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            total, terms = evaluate()
            # Kept on the device: only the terms the iteration reports are read (once).
            evaluations.append((total.detach(), {k: v.detach() for k, v in terms.items()}))
            return total

        start = self._terms
        self.optimizer.step(closure)
        last = self.optimizer.last
        if "failed" in last:
            if self.on_failure == "reset" and self.optimizer.updates_since_reset > 0:
                self.optimizer.reset_hessian()
                last["reset"] = last["failed"]
            else:
                last["stalled"] = last["failed"]
            # Parameters are back at the start point: its terms are known, from this step's
            # first evaluation or from the previous step.
            return start if start is not None else _values(*evaluations[0])
        self._terms = _values(*evaluations[-1])
        return self._terms

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "terms": self._terms}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self._terms = state["terms"]


def saved_method(state: dict) -> str:
    """The quasi-Newton method a stage's ``state_dict`` belongs to."""
    if state.get("method") == "lm":
        return "lm"
    if "optimizer" in state and "terms" in state:  # DenseStage
        return str(state["optimizer"]["param_groups"][0]["method"])
    return "lbfgs"


def lbfgs_inverse_hessian(state: dict, n: int, dtype: torch.dtype,
                          device: torch.device) -> Tuple[torch.Tensor, int]:
    """The inverse-Hessian estimate that torch's L-BFGS memory stands for, as a dense (n, n)
    matrix: ``H_diag * I`` updated by BFGS with each kept pair (s, y), oldest first; H g is
    the direction L-BFGS's two-loop recursion computes. Returns H and the number of pairs."""
    st = next(iter(state["state"].values()), {}) if state.get("state") else {}
    H = torch.eye(n, dtype=dtype, device=device)
    pairs = list(zip(st.get("old_stps", []), st.get("old_dirs", [])))
    if not pairs:
        return H, 0
    H.mul_(float(st.get("H_diag", 1.0)))
    for s, y in pairs:
        s, y = s.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device)
        rho = 1.0 / float(torch.dot(y, s))
        Hy = torch.mv(H, y)
        yHy = float(torch.dot(y, Hy))
        # (I - rho s y') H (I - rho y s') + rho s s', written as rank-one updates
        H.addr_(s, Hy, alpha=-rho)
        H.addr_(Hy, s, alpha=-rho)
        H.addr_(s, s, alpha=rho * rho * yHy + rho)
    return H, len(pairs)


def _lbfgs_evaluations(state: dict) -> int:
    st = next(iter(state["state"].values()), {}) if state.get("state") else {}
    return int(st.get("evaluations", 0))


def load_quasi_newton(o, params: List[torch.Tensor], lr_factor: float,
                      state: dict) -> Tuple[object, Optional[str]]:
    """The stage that ``o`` names, continuing from a saved stage's ``state``, and a note when
    the saved stage ran another method (a run resumed with another ``optim.qn``):

    - between dense methods (bfgs, ssbfgs, ssbroyden): the inverse Hessian carries over as is;
    - L-BFGS -> dense: H is the matrix L-BFGS's memory stands for (:func:`lbfgs_inverse_hessian`);
    - dense -> L-BFGS: L-BFGS starts with an empty memory (n x n numbers hold no pairs).

    The parameters are untouched in every case; only the curvature estimate changes hands.
    """
    stage = build_quasi_newton(o, params, lr_factor)
    saved = saved_method(state)
    if saved == stage.name:
        stage.load_state_dict(state)
        return stage, None
    change = f"optim.qn changed from {saved} to {stage.name} at resume"
    if "lm" in (saved, stage.name):  # no curvature estimate to hand over either way
        return stage, f"{change}: {stage.name} starts afresh"
    if isinstance(stage, DenseStage) and saved != "lbfgs":
        stage.load_state_dict(state)
        stage.optimizer.param_groups[0]["method"] = stage.name
        return stage, f"{change}: the inverse Hessian carried over"
    if isinstance(stage, DenseStage):
        opt = stage.optimizer
        H, pairs = lbfgs_inverse_hessian(state, opt.n, params[0].dtype, params[0].device)
        st = opt._state
        st.update(H=H, updates_since_reset=pairs, evaluations=_lbfgs_evaluations(state))
        return stage, (f"{change}: the inverse Hessian built from L-BFGS's memory "
                       f"({pairs} pairs)")
    dense = state["optimizer"]["state"]
    evaluations = int(next(iter(dense.values()), {}).get("evaluations", 0)) if dense else 0
    stage.optimizer.state[stage.params[0]]["evaluations"] = evaluations
    return stage, f"{change}: L-BFGS starts with an empty memory"


def _method(o) -> str:
    return o.qn.value if hasattr(o.qn, "value") else str(o.qn)


def check_quasi_newton(o, params: List[torch.Tensor]) -> None:
    """Refuse, before training, a network too large for a dense method (ValueError, one line
    naming the memory it would take)."""
    n = sum(p.numel() for p in params if p.requires_grad)
    method = _method(o)
    if method in (*METHODS, "lm") and params:
        matrix = "the normal equations J'J take" if method == "lm" else None
        error = dense_size_error(method, n, params[0].element_size(), o.max_dense_params,
                                 **({"matrix": matrix} if matrix else {}))
        if error:
            raise ValueError(error)


def build_quasi_newton(o, params: List[torch.Tensor], lr_factor: float = 1.0):
    """The stage that ``o`` (the ``optim`` config) names: ``o.qn`` in :data:`QN_METHODS`."""
    method = _method(o)
    if method == "lbfgs":
        return LBFGSStage(params, lr=o.lbfgs_lr * lr_factor, history=o.lbfgs_history)
    if method in METHODS:
        failure = o.on_line_search_failure
        return DenseStage(params, method, c1=o.wolfe_c1, c2=o.wolfe_c2,
                          max_evaluations=o.line_search_evals, max_params=o.max_dense_params,
                          on_failure=failure.value if hasattr(failure, "value") else str(failure))
    if method == "lm":
        return LevenbergMarquardt(params, tau=o.lm_tau, max_tries=o.lm_max_tries)
    raise ValueError(f"optim.qn={method!r} is not allowed: one of {', '.join(QN_METHODS)}")
