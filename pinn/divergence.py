"""Forward path versus predict path: how far apart are the two functions of a BN network?

The *forward* path is the network as it trains (``model.train()``, in its BN mode); the
*predict* path is the network as it is used afterwards (``model.eval()``: frozen running
statistics). Both are evaluated on a fixed probe set for U, Ux, Ut, Uxx, Utt and the residual,
and on a training batch for the loss and its parameter gradient. No pass here updates the
running statistics.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import nn

from pinn.coords import key_of
from pinn.derivatives import DERIVATIVE_KEYS, compute_derivatives
from pinn.fields import point_fields
from pinn.losses import loss_terms, weighted_total
from pinn.nn.norm import bn_layers, running_statistics_fixed
from pinn.pdes.problem import PDE
from pinn.pdes.unknowns import learned_values
from pinn.sampling import Batch


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, with b the predict path; ||a - b|| when b is zero."""
    den = b.norm().item()
    num = (a - b).norm().item()
    return num / den if den > 0 else num


def field_names(pde: PDE) -> Tuple[str, ...]:
    """The fields compared on the probe set: U, Ux, Ut, Uxx, Utt for a problem in (x, t) (each
    (P, n_out)); otherwise the fields the residual reads, by their names (``u_xy``)."""
    if pde.axes.names == ("x", "t"):
        return DERIVATIVE_KEYS
    return tuple(key_of(d, pde.outputs, pde.axes) for d in pde.wanted)


def _fields(model: nn.Module, pde: PDE, points: torch.Tensor,
            train: bool) -> Dict[str, torch.Tensor]:
    """The fields of :func:`field_names` at ``points`` and the residual there."""
    model.train(train)
    learned = learned_values(model)
    if pde.axes.names == ("x", "t"):
        x, t = points[:, :1], points[:, 1:2]
        d = compute_derivatives(model, x, t, DERIVATIVE_KEYS, create_graph=False)
        d["residual"] = pde.residual(x, t, d, learned)
        return d
    f = point_fields(model, points, pde.wanted, create_graph=False)
    out = {key_of(w, pde.outputs, pde.axes): f[w] for w in pde.wanted}
    out["residual"] = pde.residual_at(points, f, learned)
    return out


def _loss_and_grad(model: nn.Module, pde: PDE, batch: Batch, weights, train: bool, data=None):
    model.train(train)
    params = [p for p in model.parameters() if p.requires_grad]
    terms = loss_terms(model, pde, batch, data=data)
    total = weighted_total(terms, weights)
    grads = torch.autograd.grad(total, params, allow_unused=True, materialize_grads=True)
    return (total.detach(), torch.cat([g.reshape(-1) for g in grads]),
            {k: float(v.detach()) for k, v in terms.items()})


def compare_fields(fwd: Mapping[str, torch.Tensor], pred: Mapping[str, torch.Tensor],
                   outputs: Sequence[str]) -> Dict[str, float]:
    """rel_l2 and max_abs per field (and per output when there are several)."""
    out: Dict[str, float] = {}
    for key in fwd:
        a, b = fwd[key].detach(), pred[key].detach()
        out[f"{key}/rel_l2"] = rel_l2(a, b)
        out[f"{key}/max_abs"] = (a - b).abs().max().item()
        if a.dim() == 2 and a.shape[1] > 1 and len(outputs) == a.shape[1]:
            for k, name in enumerate(outputs):
                out[f"{key}/{name}/rel_l2"] = rel_l2(a[:, k], b[:, k])
                out[f"{key}/{name}/max_abs"] = (a[:, k] - b[:, k]).abs().max().item()
    return out


def measure_divergence(model: nn.Module, pde: PDE, probe: torch.Tensor, batch: Batch,
                       weights: Mapping[str, float], data=None) -> Dict[str, float]:
    """Forward-vs-predict differences, keyed as logged under ``divergence/``.

    Args:
        model: the network (its train/eval state is restored afterwards).
        pde: supplies the residual.
        probe: (P, d) fixed probe points.
        batch: training points for the loss and its gradient.
        weights: loss weights.
        data: observations (:class:`pinn.data.Observations`): the data term joins the loss,
            and its own forward-vs-predict difference is ``loss/data/rel``.
    """
    was_training = model.training
    try:
        with running_statistics_fixed(model):
            d_fwd = _fields(model, pde, probe, train=True)
            layers = bn_layers(model)
            batch_stats = [m.last_batch_stats if m.effective_mode != "frozen" else None
                           for m in layers]
            d_pred = _fields(model, pde, probe, train=False)
            loss_f, g_f, terms_f = _loss_and_grad(model, pde, batch, weights, True, data)
            loss_p, g_p, terms_p = _loss_and_grad(model, pde, batch, weights, False, data)
    finally:
        model.train(was_training)
    out = compare_fields(d_fwd, d_pred, pde.outputs)
    out["loss/forward"] = loss_f.item()
    out["loss/predict"] = loss_p.item()
    out["loss/rel"] = abs(loss_f.item() - loss_p.item()) / max(abs(loss_p.item()), 1e-300)
    if "data" in terms_f:
        out["loss/data/rel"] = (abs(terms_f["data"] - terms_p["data"])
                                / max(abs(terms_p["data"]), 1e-300))
    denom = (g_f.norm() * g_p.norm()).item()
    out["grad/cosine"] = (g_f @ g_p).item() / denom if denom > 0 else float("nan")
    # 1 - cosine on a log axis shows how close to parallel; a cosine of exactly 1.0 reads 0.
    out["grad/one_minus_cosine"] = 1.0 - out["grad/cosine"]
    out["grad/rel_l2"] = rel_l2(g_f, g_p)
    for i, (m, stats) in enumerate(zip(layers, batch_stats)):
        if stats is None:  # frozen: the forward path already uses the running statistics
            out[f"bn/layer{i}/mean_gap"] = 0.0
            out[f"bn/layer{i}/var_gap"] = 0.0
            continue
        mean_b, var_b = stats
        out[f"bn/layer{i}/mean_gap"] = rel_l2(m.running_mean, mean_b)
        out[f"bn/layer{i}/var_gap"] = rel_l2(m.running_var, var_b)
    return out


def custom_scalar_layout(n_bn_layers: int = 0,
                         names: Sequence[str] = DERIVATIVE_KEYS) -> dict:
    """TensorBoard custom-scalars layout of the divergence tags: one chart per quantity, so
    that the series in a chart are the runs (TensorBoard colours a chart's lines by run; tags
    of one run in one chart would all get the same colour). Categories: the fields, the loss,
    the parameter gradient, and the BN layers' statistics gaps."""
    fields = [*names, "residual"]
    chart = lambda tag: ["Multiline", [f"divergence/{tag}"]]  # noqa: E731
    layout = {
        "divergence: fields, forward vs predict (relative L2)":
            {k: chart(f"{k}/rel_l2") for k in fields},
        "divergence: fields (max abs)": {k: chart(f"{k}/max_abs") for k in fields},
        "divergence: loss": {"forward": chart("loss/forward"), "predict": chart("loss/predict"),
                             "relative difference": chart("loss/rel"),
                             "data term, relative difference": chart("loss/data/rel")},
        "divergence: parameter gradient": {
            "1 - cosine": chart("grad/one_minus_cosine"), "cosine": chart("grad/cosine"),
            "relative L2": chart("grad/rel_l2")},
    }
    if n_bn_layers:
        layout["divergence: BN batch vs running statistics"] = {
            f"layer {i} {q}": chart(f"bn/layer{i}/{q}_gap")
            for i in range(n_bn_layers) for q in ("mean", "var")}
    return layout
