"""Range checks of a composed run config that the schema's types cannot express.

:func:`validate` raises :class:`ConfigError`, one line naming the key, the value and what is
allowed; ``python -m pinn.train`` calls it on the command line's config before torch is imported
(:func:`pinn.cli.check_before_imports`) and again inside the run. Nothing here imports torch.
"""
from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig

from pinn.config import choice

# The values of ``device`` (pinn.device resolves them).
DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_ALLOWED = "auto, cpu, cuda or cuda:N"


class ConfigError(ValueError):
    """A config value that is well-typed but out of range; the message names the key."""


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def validate(cfg: DictConfig) -> None:
    """Range checks that the schema types cannot express.

    Raises:
        ConfigError: one line naming the key, the value and what is allowed.
    """
    m, s, t, o, p, b = cfg.model, cfg.sampler, cfg.trainer, cfg.optim, cfg.pde, cfg.bn
    _require(m.depth >= 1, "model.depth", m.depth, "an integer >= 1")
    timeout = cfg.distributed.timeout_s
    _require(math.isfinite(timeout) and timeout > 0, "distributed.timeout_s", timeout,
             "a number of seconds > 0")
    _require(m.width >= 1, "model.width", m.width, "an integer >= 1")
    _require(m.harmonics >= 1, "model.harmonics", m.harmonics, "an integer >= 1")
    _require(m.fourier_features >= 0, "model.fourier_features", m.fourier_features,
             "an integer >= 0 (0: none)")
    _require(math.isfinite(m.fourier_sigma) and m.fourier_sigma > 0, "model.fourier_sigma",
             m.fourier_sigma, "a finite number > 0")
    _require(s.n_interior >= 1, "sampler.n_interior", s.n_interior, "an integer >= 1")
    _require(s.n_initial >= 1, "sampler.n_initial", s.n_initial, "an integer >= 1")
    _require(s.n_boundary >= 0, "sampler.n_boundary", s.n_boundary, "an integer >= 0")
    _require(s.resample_every >= 0, "sampler.resample_every", s.resample_every, "an integer >= 0")
    _require(choice(s.adaptive) == "none" or s.resample_every > 0, "sampler.adaptive", "rad",
             "with sampler.resample_every=0 there are no redraws to adapt; set "
             "sampler.resample_every to a number of steps > 0")
    _require(math.isfinite(s.rad_k) and s.rad_k >= 0, "sampler.rad_k", s.rad_k,
             "a number >= 0")
    _require(math.isfinite(s.rad_c) and s.rad_c >= 0, "sampler.rad_c", s.rad_c,
             "a number >= 0")
    _require(s.rad_oversample >= 1, "sampler.rad_oversample", s.rad_oversample,
             "an integer >= 1 (candidates per interior point)")
    _require(t.steps >= 0, "trainer.steps", t.steps, "an integer >= 0")
    _require(t.qn_steps >= 0, "trainer.qn_steps", t.qn_steps, "an integer >= 0")
    _require(t.max_minutes is None or (math.isfinite(t.max_minutes) and t.max_minutes > 0),
             "trainer.max_minutes", t.max_minutes, "null or a number > 0")
    _require(t.stall_iterations >= 0, "trainer.stall_iterations", t.stall_iterations,
             "an integer >= 0 (0 turns the stall check off)")
    _require(math.isfinite(t.stall_rtol) and t.stall_rtol >= 0, "trainer.stall_rtol",
             t.stall_rtol, "a number >= 0")
    for key in ("log_every", "eval_every", "checkpoint_every"):
        _require(t[key] >= 1, f"trainer.{key}", t[key], "an integer >= 1")
    _require(t.num_threads is None or t.num_threads >= 1, "trainer.num_threads", t.num_threads,
             "null or an integer >= 1")
    _require(t.max_rollbacks >= 0, "trainer.max_rollbacks", t.max_rollbacks, "an integer >= 0")
    _require(t.get("time_windows", 1) >= 1, "trainer.time_windows", t.get("time_windows"),
             "an integer >= 1 (1: one network for the whole time interval)")
    _require(0 < t.rollback_lr_factor < 1, "trainer.rollback_lr_factor", t.rollback_lr_factor,
             "a number in (0, 1)")
    _require(math.isfinite(o.lr) and o.lr > 0, "optim.lr", o.lr, "a finite number > 0")
    _require(o.lbfgs_lr > 0, "optim.lbfgs_lr", o.lbfgs_lr, "a number > 0")
    _require(o.lbfgs_history >= 1, "optim.lbfgs_history", o.lbfgs_history, "an integer >= 1")
    _require(o.max_dense_params >= 1, "optim.max_dense_params", o.max_dense_params,
             "an integer >= 1")
    _require(0 < o.wolfe_c1 < o.wolfe_c2 < 1, "optim.wolfe_c1/wolfe_c2",
             (o.wolfe_c1, o.wolfe_c2), "numbers with 0 < wolfe_c1 < wolfe_c2 < 1")
    _require(math.isfinite(o.lm_tau) and o.lm_tau > 0, "optim.lm_tau", o.lm_tau,
             "a finite number > 0")
    _require(o.lm_max_tries >= 1, "optim.lm_max_tries", o.lm_max_tries, "an integer >= 1")
    _require(o.line_search_evals >= 1, "optim.line_search_evals", o.line_search_evals,
             "an integer >= 1")
    _require(o.decay_steps >= 1, "optim.decay_steps", o.decay_steps, "an integer >= 1")
    _require(0 < o.decay_rate <= 1, "optim.decay_rate", o.decay_rate, "a number in (0, 1]")
    _require(len(o.betas) == 2 and all(0 <= v < 1 for v in o.betas), "optim.betas",
             list(o.betas), "two numbers in [0, 1)")
    if p.axes is None:
        _require(p.x_max > p.x_min, "pde.x_max", p.x_max, f"a number > pde.x_min={p.x_min}")
        _require(p.t_max > p.t_min, "pde.t_max", p.t_max, f"a number > pde.t_min={p.t_min}")
    for axis, n in (p.get("eval_points") or {}).items():
        _require(n >= 2, f"pde.eval_points.{axis}", n, "an integer >= 2")
    _require(p.eval_nx >= 2 and p.eval_nt >= 2, "pde.eval_nx/eval_nt", (p.eval_nx, p.eval_nt),
             "integers >= 2")
    _require(choice(cfg.loss.balance) == "none" or s.resample_every > 0, "loss.balance",
             choice(cfg.loss.balance), "the weights are rebalanced at redraws; set "
             "sampler.resample_every to a number of steps > 0, or loss.balance=none")
    _require(0 <= cfg.loss.balance_momentum < 1, "loss.balance_momentum",
             cfg.loss.balance_momentum, "a number in [0, 1)")
    _require(math.isfinite(cfg.loss.causal_eps) and cfg.loss.causal_eps >= 0,
             "loss.causal_eps", cfg.loss.causal_eps, "a finite number >= 0")
    _require(0 <= cfg.loss.attention_gamma < 1, "loss.attention_gamma",
             cfg.loss.attention_gamma, "a number in [0, 1)")
    _require(math.isfinite(cfg.loss.attention_eta) and cfg.loss.attention_eta > 0,
             "loss.attention_eta", cfg.loss.attention_eta, "a finite number > 0")
    _require(math.isfinite(cfg.loss.attention_lambda0) and cfg.loss.attention_lambda0 >= 0,
             "loss.attention_lambda0", cfg.loss.attention_lambda0, "a finite number >= 0")
    _require(choice(cfg.loss.attention) == "none" or not cfg.loss.causal, "loss.attention",
             choice(cfg.loss.attention), "none with loss.causal=true (both weight the residual; "
             "choose one)")
    _require(choice(cfg.loss.attention) == "none" or choice(cfg.loss.attention_qn) != "sampling"
             or choice(s.adaptive) == "rad" or t.qn_steps == 0, "loss.attention_qn", "sampling",
             "weights here; sampling draws the quasi-Newton stage's points by attention among "
             "RAD's candidates and needs sampler.adaptive=rad")
    _require(cfg.loss.causal_chunks >= 1, "loss.causal_chunks", cfg.loss.causal_chunks,
             "an integer >= 1")
    for name, w in cfg.loss.weights.items():
        _require(name in ("res", "ic", "bc", "data") or name.startswith("res_"),
                 f"loss.weights.{name}", w,
                 "keys res, ic, bc, data, and res_<equation> for a residual with named equations")
        _require(w >= 0, f"loss.weights.{name}", w, "a number >= 0")
    unknown = list((p.get("unknown") or {}).keys())
    if unknown and not cfg.data.file and not cfg.data.allow_unobserved:
        raise ConfigError(f"pde.unknown.{unknown[0]}: a learned coefficient needs observations: "
                          "give data.file=<.npz|.csv|.mat> (python -m pinn.data makes one), or "
                          "set data.allow_unobserved=true to learn it from the residual alone "
                          "(usually not identifiable)")
    _require(b.momentum is None or 0 < b.momentum <= 1, "bn.momentum", b.momentum,
             "null (cumulative average) or a number in (0, 1]")
    _require(b.eps > 0, "bn.eps", b.eps, "a number > 0")
    _require(cfg.log.divergence_every >= 0, "log.divergence_every", cfg.log.divergence_every,
             "an integer >= 0 (0 turns the divergence log off)")
    _require(cfg.log.divergence_points >= 2, "log.divergence_points",
             cfg.log.divergence_points, "an integer >= 2")
    _require(not (choice(cfg.derivatives.engine) == "taylor" and choice(m.norm) == "batch"
                  and choice(b.mode) == "batch"), "derivatives.engine", "taylor",
             "with bn.mode=batch the batch statistics couple the points; use autograd (or auto)")
    coupled = (choice(m.norm) == "batch" and choice(b.mode) == "batch"
               and not b.allow_coupled_derivatives)
    _require(not coupled, "bn.mode", "batch",
             "with bn.mode=batch every point's U depends on every other point of the batch "
             "through the batch statistics, so grad(U.sum(), x) is not a per-point derivative "
             "(Uxx comes out identically zero) and the PDE residual is wrong; use "
             "bn.mode=detached (batch statistics as constants) or bn.mode=frozen (population "
             "statistics), or set bn.allow_coupled_derivatives=true to train it anyway and "
             "watch divergence/ in TensorBoard")
    _require(b.freeze_at is None or b.freeze_at >= 0, "bn.freeze_at", b.freeze_at,
             "null or an integer >= 0")
    _require(DEVICE_SPEC.match(str(cfg.device).strip().lower()) is not None, "device", cfg.device,
             DEVICE_ALLOWED)
