"""U, Ux, Ut, Uxx, Utt: the one place where input derivatives are taken.

The network maps (N, 2) points to (N, n_out) values. For each output channel k the first
derivatives come from one reverse pass of ``U[:, k].sum()`` with respect to x and t, and the
second derivatives from a reverse pass of the first. Summing over points gives per-point
derivatives only when each output row depends on its own input row alone, which holds for every
network here except batch normalization in ``batch`` mode (see :mod:`pinn.nn.norm`).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable

import torch

from pinn.coords import DERIVATIVE_KEYS  # re-exported: the key vocabulary lives with the axes


def _grads(y: torch.Tensor, inputs: list, create_graph: bool) -> list:
    """[d(sum y)/d v for v in inputs] in one reverse pass; zeros where y does not depend on v
    (e.g. the second derivative of a linear function)."""
    if not y.requires_grad or not inputs:
        return [torch.zeros_like(v) for v in inputs]
    # retain_graph: later calls (other outputs, other variables) reuse the same forward graph.
    return list(torch.autograd.grad(y.sum(), inputs, create_graph=create_graph,
                                    retain_graph=True, allow_unused=True,
                                    materialize_grads=True))


ENGINES = ("autograd", "taylor")


def compute_derivatives(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        t: torch.Tensor, needed: Iterable[str] = DERIVATIVE_KEYS,
                        create_graph: bool = True, engine: str = "autograd",
                        compile: bool = False) -> Dict[str, torch.Tensor]:
    """Evaluate the network and the input derivatives that ``needed`` names.

    ``engine="autograd"`` (the reference) works for any callable; ``engine="taylor"`` pushes
    the derivatives forward through a :class:`pinn.nn.MLP` in one pass (see
    :mod:`pinn.taylor`), optionally through ``torch.compile`` (``compile=True``).

    Args:
        model: maps an (N, 2) tensor of columns (x, t) to (N, n_out).
        x, t: (N, 1) each.
        needed: a subset of :data:`DERIVATIVE_KEYS`; ``U`` is always returned.
        create_graph: keep the graph so that a loss built from the derivatives can be
            differentiated with respect to the parameters (training). ``False`` for evaluation.

    Returns:
        dict mapping each requested key to an (N, n_out) tensor.
    """
    if engine == "taylor":
        from pinn.taylor import taylor_derivatives

        d = taylor_derivatives(model, x, t, needed, compile=compile)
        return d if create_graph else {k: v.detach() for k, v in d.items()}
    if engine != "autograd":
        raise ValueError(f"derivatives.engine={engine!r} is not allowed: one of "
                         f"{', '.join(ENGINES)}")
    needed = set(needed) | {"U"}
    unknown = needed - set(DERIVATIVE_KEYS)
    if unknown:
        raise ValueError(f"unknown derivative(s) {sorted(unknown)}: allowed {DERIVATIVE_KEYS}")
    if x.shape != t.shape or x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"x and t must both be (N, 1); got {tuple(x.shape)} and {tuple(t.shape)}")
    want_x = bool(needed & {"Ux", "Uxx"})
    want_t = bool(needed & {"Ut", "Utt"})
    if want_x and not x.requires_grad:
        x = x.detach().requires_grad_(True)
    if want_t and not t.requires_grad:
        t = t.detach().requires_grad_(True)
    with torch.enable_grad():
        U = model(torch.cat([x, t], dim=1))  # (N, n_out)
        out: Dict[str, list] = {k: [] for k in needed if k != "U"}
        # First derivatives must keep their graph when second derivatives follow.
        graph1 = create_graph or bool(needed & {"Uxx", "Utt"})
        inputs = [v for v, w in ((x, want_x), (t, want_t)) if w]
        for k in range(U.shape[1]):
            firsts = dict(zip([n for n, w in (("x", want_x), ("t", want_t)) if w],
                              _grads(U[:, k : k + 1], inputs, graph1)))
            for var, v in (("x", x), ("t", t)):
                if var not in firsts:
                    continue
                if f"U{var}" in needed:
                    out[f"U{var}"].append(firsts[var])
                if f"U{var}{var}" in needed:
                    out[f"U{var}{var}"].append(_grads(firsts[var], [v], create_graph)[0])
    result = {"U": U}
    for key, cols in out.items():
        d = torch.cat(cols, dim=1)  # (N, n_out)
        result[key] = d if create_graph else d.detach()
    if not create_graph:
        result["U"] = U.detach()
    return result
