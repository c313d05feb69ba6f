"""Structured config schema.

Each config group in ``configs/`` has a dataclass here. The dataclasses are stored in Hydra's
ConfigStore as the base of each group's YAML files, so a misspelt key (``model.widht=3``), a wrong
type (``model.width=abc``) or a value outside an enum (``model.activation=relu6``) fails at
composition time with a message naming the key and what is allowed.

Range checks that a type cannot express (``model.width > 0``, an empty domain, ...) live in
:func:`pinn.validation.validate`, which the entry points call before anything is written.
"""
from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

# The pde group's schema, re-exported: the rest of the project imports the schema from here.
from pinn.pde_config import BoundaryConfig, BoundaryKind, PDEConfig  # noqa: F401


def _find_config_dir() -> Path:
    """configs/ beside the package (checkout, editable install) or pinn/conf (installed wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no train.yaml in {here / 'conf'} or {here.parent / 'configs'}")


CONFIG_DIR = _find_config_dir()


class Activation(str, Enum):
    tanh = "tanh"
    gelu = "gelu"
    sin = "sin"
    silu = "silu"


class Norm(str, Enum):
    none = "none"
    batch = "batch"


class BNMode(str, Enum):
    batch = "batch"  # batch statistics, differentiated through (PyTorch train())
    detached = "detached"  # batch statistics as constants in every derivative
    frozen = "frozen"  # stored population statistics as constants (PyTorch eval())


class Precision(str, Enum):
    float32 = "float32"
    float64 = "float64"


class NonFinitePolicy(str, Enum):
    rollback = "rollback"  # restore the last good state, lower the learning rate, go on
    stop = "stop"  # stop with the last good state checkpointed


class Engine(str, Enum):
    auto = "auto"  # taylor where it supports the network, else autograd
    autograd = "autograd"  # reverse over reverse: the reference, any network
    taylor = "taylor"  # forward Taylor mode through the MLP (BN detached/frozen only)


class SamplerKind(str, Enum):
    uniform = "uniform"
    sobol = "sobol"


class QNMethod(str, Enum):
    lbfgs = "lbfgs"  # torch's limited-memory BFGS (any network size)
    bfgs = "bfgs"  # dense inverse-Hessian BFGS
    ssbfgs = "ssbfgs"  # self-scaled BFGS (Al-Baali)
    ssbroyden = "ssbroyden"  # self-scaled Broyden (Al-Baali & Khalfan)
    lm = "lm"  # Levenberg-Marquardt on the residual vector (Gauss-Newton with damping)


class LineSearchFailure(str, Enum):
    reset = "reset"  # reset the inverse Hessian and go on; stop if that fails again
    stop = "stop"  # end training at the first failed line search


class Adaptive(str, Enum):
    none = "none"  # redraws (if any) are plain draws of the sampler's kind
    rad = "rad"  # residual-based adaptive distribution (Wu et al. 2023)


class Scheduler(str, Enum):
    none = "none"
    exponential = "exponential"
    cosine = "cosine"


@dataclass
class ModelConfig:
    """MLP on (x, t): ``depth`` hidden blocks of [Linear(width), norm, activation].

    Attributes:
        depth: hidden blocks
        width: neurons per hidden block
        activation: tanh, gelu, sin or silu
        norm: none, or batch (batch normalization in every hidden block; see bn.*)
        periodic: features exactly periodic in x with the domain's period (cos, sin of
            model.harmonics harmonics instead of x; Dong & Ni 2021), so u and all its
            x-derivatives agree at both ends and the boundary term is left out for periodic
            problems
        harmonics: harmonics of the periodic embedding
        fourier_features: random Fourier features of (x, t) (Tancik et al. 2020), 0 for none
        fourier_sigma: standard deviation of their frequencies, on inputs scaled to [-1, 1]
        hard_initial: impose the initial condition exactly, u = u0(x) + tau N (u0 + t v0 +
            tau^2 N in second order), tau the scaled time (Lagaris et al. 1998); the initial
            term is left out of the loss; any axes with time
        hard_boundary: impose u = 0 on the faces exactly, N multiplied by (x - x_min)(x_max -
            x) / (L/2)^2 per non-periodic space axis (Lagaris et al. 1998; Sukumar &
            Srivastava 2022): Dirichlet conditions u = 0 on every face and output (and, with
            hard_initial, initial values 0 there); the boundary term is left out of the loss
    """

    depth: int = 4
    width: int = 20
    activation: Activation = Activation.tanh
    norm: Norm = Norm.none
    periodic: bool = False
    harmonics: int = 1
    fourier_features: int = 0
    fourier_sigma: float = 1.0
    hard_initial: bool = False
    hard_boundary: bool = False


@dataclass
class BNConfig:
    """Batch-normalization semantics; used when ``model.norm=batch``.

    Attributes:
        mode: batch (statistics differentiated through, like PyTorch's train()), detached
            (batch statistics as constants in every derivative) or frozen (stored population
            statistics, like eval())
        momentum: running-statistics update factor; null means a cumulative (equal-weight)
            average
        eps: added to the variance before the square root
        freeze_at: step at which the network switches to frozen statistics, after an exact
            calibration; null never
        calibrate_at_end: calibrate exactly on the interior points before the final
            evaluation and checkpoint, so that the saved (predict-mode) network is the one
            trained; no effect in frozen mode
        allow_coupled_derivatives: train with mode=batch anyway, although the batch statistics
            couple the points' derivatives
    """

    mode: BNMode = BNMode.detached
    momentum: Optional[float] = 0.1
    eps: float = 1e-5
    freeze_at: Optional[int] = None
    calibrate_at_end: bool = True
    allow_coupled_derivatives: bool = False


@dataclass
class DerivativesConfig:
    """How U, Ux, Ut, Uxx, Utt are computed.

    Attributes:
        engine: auto (taylor where it supports the network, else autograd), autograd (reverse
            over reverse, any network) or taylor (forward Taylor mode; BN detached/frozen only)
        compile: torch.compile the taylor engine's pointwise work; falls back to eager
            (reported) when the compiler is missing or fails
    """

    engine: Engine = Engine.auto
    compile: bool = True


@dataclass
class OptimConfig:
    """Adam with a learning-rate schedule, then the quasi-Newton stage.

    Attributes:
        lr: Adam learning rate
        betas: Adam's two averaging factors
        weight_decay: Adam's L2 penalty on the parameters
        scheduler: exponential (lr * decay_rate ** (step / decay_steps)), cosine (to lr *
            min_lr_ratio at the end of Adam) or none
        decay_rate: exponential schedule: factor per decay_steps steps
        decay_steps: exponential schedule: steps per decay_rate
        min_lr_ratio: cosine schedule: final learning rate over lr
        qn: quasi-Newton method after Adam: lbfgs, bfgs, ssbfgs, ssbroyden, or lm
            (Levenberg-Marquardt on the residual vector, pinn/optim/gauss_newton.py)
        lbfgs_lr: L-BFGS step length factor
        lbfgs_history: L-BFGS curvature pairs kept
        max_dense_params: bfgs, ssbfgs and ssbroyden keep an n x n inverse Hessian, lm the
            n x n normal equations: networks with more parameters are refused
        lm_tau: lm: first damping relative to the largest diagonal entry of J'J
        lm_max_tries: lm: damped solves one iteration may try before training stops
        wolfe_c1: sufficient-decrease constant of the strong-Wolfe line search
        wolfe_c2: curvature constant of the strong-Wolfe line search
        line_search_evals: loss evaluations one line search may take
        on_line_search_failure: reset (the inverse Hessian, then stop if it fails again) or
            stop
    """

    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    scheduler: Scheduler = Scheduler.exponential
    decay_rate: float = 0.9
    decay_steps: int = 1000
    min_lr_ratio: float = 0.01
    qn: QNMethod = QNMethod.ssbroyden
    lbfgs_lr: float = 1.0
    lbfgs_history: int = 50
    max_dense_params: int = 10000
    lm_tau: float = 1.0e-3
    lm_max_tries: int = 30
    wolfe_c1: float = 1.0e-4
    wolfe_c2: float = 0.9
    line_search_evals: int = 25
    on_line_search_failure: LineSearchFailure = LineSearchFailure.reset


@dataclass
class SamplerConfig:
    """Collocation points.

    Attributes:
        kind: sobol (scrambled, seeded) or uniform
        n_interior: interior (residual) points
        n_initial: points on t = t_min
        n_boundary: points on the two ends, in pairs
        resample_every: fresh points every this many steps, Adam and quasi-Newton alike; 0
            keeps the first draw
        adaptive: rad (interior points of a redraw chosen by residual) or none (plain draws)
        rad_k: RAD exponent: probability proportional to |r|^rad_k / mean(|r|^rad_k) + rad_c
        rad_c: RAD uniform share
        rad_oversample: RAD candidates per interior point
    """

    kind: SamplerKind = SamplerKind.sobol
    n_interior: int = 4000
    n_initial: int = 200
    n_boundary: int = 200
    resample_every: int = 250
    adaptive: Adaptive = Adaptive.rad
    rad_k: float = 1.0
    rad_c: float = 1.0
    rad_oversample: int = 5


@dataclass
class TrainerConfig:
    """The training loop.

    Attributes:
        steps: Adam steps
        qn_steps: quasi-Newton iterations after Adam (optim.qn)
        max_minutes: wall-clock budget of the training loop in minutes, compilation
            included (the loop's own time: start-up and the final evaluation are not counted);
            reaching it ends training early with an event, then evaluates and checkpoints as
            usual; null none
        stall_iterations: the quasi-Newton stage ends when the loss falls by less than
            stall_rtol of itself over this many iterations on the same points; 0 never
        stall_rtol: see stall_iterations
        log_every: TensorBoard scalars every this many steps
        eval_every: errors against the reference (and a figure) every this many steps
        checkpoint_every: checkpoint every this many steps
        progress: progress bar on a terminal, a line every 30 s into a file
        num_threads: torch intra-op threads, 1 by default; null leaves torch's default (one
            per core). On an idle 2-core machine 2 threads train the default run 1.1-1.3x faster,
            but with another busy process on the machine 3.6x slower than 1 thread
        resume: continue a run: its folder, or auto for the newest run under outputs/ with
            this config
        on_nonfinite: rollback (to the last good state, with a lower learning rate) or stop,
            on a NaN/inf loss or gradient
        max_rollbacks: rollbacks before the run stops
        rollback_lr_factor: learning-rate factor at each rollback
        debug_nan_at: fault injection for tests: the loss of this step becomes NaN (once)
        time_windows: time marching: the time interval split into this many equal windows,
            one network each, trained in turn, each starting from the last one's parameters
            with its prediction at the window's start as initial condition (pinn/marching.py);
            1 none
        cuda_graph: on a CUDA device, the loss-and-gradient evaluation captured in a CUDA
            graph and replayed (pinn/training/capture.py says where it is not); false
            evaluates eagerly; no effect on the CPU
    """

    steps: int = 1000
    qn_steps: int = 4000
    max_minutes: Optional[float] = None
    stall_iterations: int = 200
    stall_rtol: float = 1e-10
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    progress: bool = True
    num_threads: Optional[int] = 1
    resume: Optional[str] = None
    on_nonfinite: NonFinitePolicy = NonFinitePolicy.rollback
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    debug_nan_at: Optional[int] = None
    cuda_graph: bool = True
    time_windows: int = 1


class Balance(str, Enum):
    none = "none"  # the configured weights throughout
    grad_norm = "grad_norm"  # equal parameter-gradient norms, recomputed at each redraw


class Attention(str, Enum):
    none = "none"  # every interior point counts alike
    rba = "rba"  # residual-based attention, q = |r| (pinn/attention.py)
    vrba = "vrba"  # variational RBA with the exponential potential


class AttentionQN(str, Enum):
    sampling = "sampling"  # quasi-Newton stage: attention draws the points, unweighted loss
    weights = "weights"  # quasi-Newton stage: the multipliers weight the residual, held


@dataclass
class LossConfig:
    """The weighted loss.

    Attributes:
        weights: weights of the mean-square terms res, ic, bc
        balance: none, or grad_norm (at every redraw the weights move towards those that give
            each term the same gradient norm)
        balance_momentum: grad_norm: w <- m w + (1 - m) w_new with this m
        causal: weight the residual causally in time (Wang, Sankaran & Perdikaris 2024):
            loss.causal_chunks time slices, slice i weighted exp(-eps * the residual losses
            of the slices before it); fresh every Adam step, held between redraws in the
            quasi-Newton stage
        causal_eps: the causality parameter eps
        causal_chunks: time slices of the causal weighting
        attention: none, rba or vrba: a multiplier per interior point on its residual,
            lambda <- gamma lambda + eta q / max q (pinn/attention.py); held between redraws
            in the quasi-Newton stage
        attention_gamma: the multipliers' memory gamma (bound eta / (1 - gamma))
        attention_eta: the multipliers' step eta
        attention_lambda0: the multipliers before the first update
        attention_qn: what attention does in the quasi-Newton stage: sampling (each redraw
            draws the interior points among RAD's candidates with probability proportional
            to their attention, and the residual is unweighted: the vRBA authors' scheme) or
            weights (the multipliers weight the residual, held between redraws)
    """

    weights: Dict[str, float] = field(default_factory=lambda: {"res": 1.0, "ic": 10.0, "bc": 1.0})
    balance: Balance = Balance.none
    balance_momentum: float = 0.5
    causal: bool = False
    causal_eps: float = 1.0
    causal_chunks: int = 32
    attention: Attention = Attention.none
    attention_gamma: float = 0.999
    attention_eta: float = 0.01
    attention_lambda0: float = 0.0
    attention_qn: AttentionQN = AttentionQN.sampling


@dataclass
class LogConfig:
    """What a run writes besides metrics.json and checkpoints.

    Attributes:
        tensorboard: write TensorBoard events
        figures: prediction figures at each evaluation
        divergence_every: forward-vs-predict divergence of BN networks every this many steps;
            0 never
        divergence_points: points of the fixed probe set of the divergence log
    """

    tensorboard: bool = True
    figures: bool = True
    divergence_every: int = 100
    divergence_points: int = 1000


@dataclass
class DistributedConfig:
    """Runs across several processes (``torchrun --nproc_per_node=N -m pinn.train ...``).

    Attributes:
        timeout_s: how long a rank waits in a collective for a rank that does not answer
            before the run ends (a rank that dies ends it at once)
        debug_kill_at: fault injection for tests: rank ``debug_kill_rank`` kills itself
            (SIGKILL) when this step begins
        debug_kill_rank: the rank that ``debug_kill_at`` kills
    """

    timeout_s: float = 300.0
    debug_kill_at: Optional[int] = None
    debug_kill_rank: int = 1


@dataclass
class DataConfig:
    """Observations for a data loss term ``data`` (inverse problems; see pinn/data.py).

    Attributes:
        file: an .npz, .csv or .mat file with columns x, t and some or all outputs; null = none
        columns: variable -> column name in the file, where they differ ({u: u_noisy})
        outputs: the outputs observed; null = every output with a column in the file
        noise_column: a column of standard deviations (weight 1/sigma^2, normalized to mean 1)
        weight_column: a column of weights (normalized to mean 1)
        allow_unobserved: train unknown coefficients (pde.unknown) without observations
    """

    file: Optional[str] = None
    columns: Dict[str, str] = field(default_factory=dict)
    outputs: Optional[List[str]] = None
    noise_column: Optional[str] = None
    weight_column: Optional[str] = None
    allow_unobserved: bool = False


@dataclass
class TrainConfig:
    """``python -m pinn.train``.

    Attributes:
        precision: float32 or float64 (everything in double)
        seed: network initialization and every sampled point
        device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N
        tf32: CUDA float32 runs only: TensorFloat-32 matrix products (faster, about 1e-3
            rounding)
        trial: the run's trial number in a search (set by ``hydra/sweeper=optuna``)
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    pde: PDEConfig = field(default_factory=PDEConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    bn: BNConfig = field(default_factory=BNConfig)
    derivatives: DerivativesConfig = field(default_factory=DerivativesConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    precision: Precision = Precision.float64
    seed: int = 0
    device: str = "auto"
    tf32: bool = False
    trial: Optional[int] = None


def register_configs() -> None:
    """Store the schema so YAML files can name it in their defaults list, and register the
    resolver that gives each run a folder of its own (:func:`pinn.paths.claim_run_dir`)."""
    from pinn.paths import register_run_dir_resolver

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    register_run_dir_resolver()


def load_saved_config(config_yaml: str) -> DictConfig:
    """A run's saved config on today's schema. Configs written before the quasi-Newton stage
    was configurable (``trainer.qn_steps``) are read as ``trainer.qn_steps`` with
    ``optim.qn=lbfgs``, which is what those runs did."""
    saved = OmegaConf.create(config_yaml)
    trainer = saved.get("trainer")
    if trainer is not None and "qn_steps" in trainer:
        trainer["qn_steps"] = trainer.pop("qn_steps")
        if saved.get("optim") is not None and "qn" not in saved.optim:
            saved.optim["qn"] = "lbfgs"
    return OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)


def choice(value: Any) -> str:
    """The plain string of an enum-typed config value (``Activation.tanh`` -> ``"tanh"``)."""
    return value.value if isinstance(value, Enum) else str(value)
