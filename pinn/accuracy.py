"""``python -m pinn.accuracy``: the accuracy of pinn over its problem library, beside the
published results.

A suite is a list of cases (problem, recipe, seeds, time budget). Each (case, seed) is an
ordinary ``python -m pinn.train`` run in its own folder under ``--out`` (default
``outputs/accuracy/<date>/<time>``); the table is built from those folders' ``metrics.json``
afterwards, so every number in it can be traced to a run. Written: ``accuracy.md`` (Markdown)
and ``accuracy.json`` in ``--out``; the Markdown table is printed.

    python -m pinn.accuracy                  # the full suite (budget in docs/accuracy.md)
    python -m pinn.accuracy --quick          # a few minutes: the default recipe, one seed
    python -m pinn.accuracy --nd             # the problems in 2-D and 3-D, KdV, KS
    python -m pinn.accuracy --geometry       # the problems on shapes (holes, L-shape, cylinder)
    python -m pinn.accuracy --hard           # convection, reaction; lm, vrba and rba recipes
    python -m pinn.accuracy --cases heat_precise,burgers_precise --seeds 0,1,2
    python -m pinn.accuracy --list           # the cases, their commands and budgets
    python -m pinn.accuracy --jobs 2         # two runs at a time, one torch thread each

Columns: problem | recipe | seeds | relative L2 (median, worst over the seeds; of each output)
| published best and its source | wall time (median, compilation included; compilation apart)
| iterations (Adam + quasi-Newton, median) | parameters.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

# Published relative L2 errors (float64, small tanh MLPs unless noted), as (value, source).
PUBLISHED = {
    "burgers": ("7.57e-8", "SSBroyden, Kiyani et al. 2025 (CMAME 446:118308); Raissi et al. "
                           "2019: 6.7e-4"),
    "allen_cahn": ("1.88e-6", "vRBA + SSBroyden, Toscano et al. 2025 (arXiv 2509.14198); "
                              "jaxpi 5.37e-5"),
    "nls": ("1.97e-3", "|h|, Raissi et al. 2019 (JCP 378)"),
    "advection": ("-", "c = 1 as shipped; jaxpi's 6.88e-4 is for c = 100"),
    "heat": ("-", "no published PINN figure for this manufactured case"),
    "wave": ("-", "no published PINN figure for this case"),
    "klein_gordon": ("-", "no published relative L2 for this manufactured case"),
    "kdv": ("2.17e-6", "vRBA + SSBroyden, Toscano et al. 2025 (arXiv 2509.14198); PirateNet "
                       "4.3e-4"),
    "kuramoto_sivashinsky": ("1.61e-1", "jaxpi's best on t in [0, 1] (10 time windows; "
                                        "examples/ks_chaotic README); its 1.42e-4 is on "
                                        "t in [0, 0.1]"),
    "poisson2d": ("-", "no published PINN figure for this manufactured case"),
    "poisson3d": ("-", "no published PINN figure for this manufactured case"),
    "helmholtz2d": ("-", "Wang, Teng & Perdikaris 2021 (SIAM J. Sci. Comput. 43) report this "
                         "case with float32 Adam; their figure is not checked here"),
    "heat2d": ("-", "no published PINN figure for this manufactured case"),
    "kovasznay": ("-", "no published figure checked here"),
    "taylor_green": ("-", "no published figure checked here"),
    "cavity": ("-", "target: every tabulated centerline velocity of Ghia et al. within 1% of "
                    "the lid speed"),
    "laplace_lshape": ("-", "no published PINN figure checked here"),
    "poisson_holes": ("-", "manufactured here; PINNacle's Poisson with holes (Hao et al. 2024) "
                           "is another problem"),
    "heat_annulus": ("-", "manufactured here"),
    "cylinder": ("c_d 5.57953523384", "FEATFLOW DFG benchmark 2D-1 values, within Schafer & "
                                       "Turek 1996's intervals (c_d 5.57-5.59)"),
}


@dataclass
class Case:
    """One row of the table: a problem trained with a recipe over some seeds.

    Attributes:
        name: row key, ``<problem>_<recipe>``
        problem: ``pde=`` of the runs
        recipe: what the overrides amount to, in a word (default, precise, bn_detached, ...)
        overrides: the command line of each run besides ``pde=`` and ``seed=``
        seeds: seeds of the runs
        minutes: the training budget of each run (``trainer.max_minutes``), or None
    """

    name: str
    problem: str
    recipe: str
    overrides: List[str]
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    minutes: Optional[float] = None
    published: Optional[Tuple[str, str]] = None  # (value, source) where PUBLISHED's is not it

    def command(self, seed: int, extra: Sequence[str] = ()) -> List[str]:
        budget = [] if self.minutes is None else [f"trainer.max_minutes={self.minutes:g}"]
        return [f"pde={self.problem}", *self.overrides, *budget, f"seed={seed}", *extra]


PROBLEMS = ("burgers", "heat", "wave", "klein_gordon", "advection", "allen_cahn", "nls")
BN_DETACHED = ["model.norm=batch", "bn.mode=detached"]
BN_FROZEN = ["model.norm=batch", "bn.mode=detached", "bn.freeze_at=0"]


# The recipe of each problem: its own preset where it needs more than experiment=precise
# (configs/experiment/<problem>_precise.yaml says what and why, with the measurements).
RECIPES = {"allen_cahn": "allen_cahn_precise", "nls": "nls_precise", "wave": "wave_precise"}
MINUTES = 3.0  # the training budget of a run of the full suite, unless BUDGETS says otherwise
# Problems that need a longer budget to reach their target, with the measurement that set it:
# wave_precise, seed 0, two runs side by side with one thread each, relative L2 after about
# 3 / 4.5 / 8 / 10 minutes: 3.7e-5 / 1.2e-5 / 3e-6 / 1.5e-6 (the BN rows get the same budget).
BUDGETS = {"wave": 8.0}


def full_suite() -> List[Case]:
    """The documented suite: each problem with its precise recipe (3 minutes a run, wave 8,
    3 seeds), and again with BN in detached and in frozen mode (the same recipe and budget;
    the quasi-Newton stage always runs with frozen statistics, see docs/accuracy.md)."""
    cases = []
    for p in PROBLEMS:
        preset, minutes = RECIPES.get(p, "precise"), BUDGETS.get(p, MINUTES)
        cases.append(Case(f"{p}_precise", p, preset, [f"experiment={preset}"], minutes=minutes))
    for p in PROBLEMS:
        preset, minutes = RECIPES.get(p, "precise"), BUDGETS.get(p, MINUTES)
        cases.append(Case(f"{p}_bn_detached", p, f"{preset} + BN detached (frozen in the "
                          "quasi-Newton stage, whose line search needs one function)",
                          [f"experiment={preset}", *BN_DETACHED], minutes=minutes))
        cases.append(Case(f"{p}_bn_frozen", p, f"{preset} + BN frozen (calibrated at step 0)",
                          [f"experiment={preset}", *BN_FROZEN], minutes=minutes))
    return cases


# Problems beyond one space dimension, and the higher-order ones, with their time budgets
# (minutes per run, the targets of the problem library's issue): each with experiment=precise.
ND_BUDGETS = {"poisson2d": 3.0, "poisson3d": 5.0, "helmholtz2d": 5.0, "kovasznay": 5.0,
              "heat2d": 5.0, "taylor_green": 10.0, "cavity": 15.0, "kdv": 15.0,
              "kuramoto_sivashinsky": 15.0}


ND_RECIPES = {"poisson3d": "poisson3d_precise", "kdv": "kdv_precise",
              "kuramoto_sivashinsky": "kuramoto_sivashinsky_precise",
              "taylor_green": "taylor_green_precise"}
# Kuramoto-Sivashinsky again on jaxpi's short horizon, where its published figure was measured:
# the ablation table of examples/ks_chaotic/README.md, whose configs set time_fraction = 0.1.
KS_SHORT_PUBLISHED = ("1.42e-4", "jaxpi, t in [0, 0.1]: one window, 100k Adam steps, 4 x 256 "
                                 "modified MLP (examples/ks_chaotic README, configs/default.py)")


def nd_suite() -> List[Case]:
    """Problems in two and three space dimensions, systems and the higher-order problems in
    (x, t): their recipe (:data:`ND_RECIPES`, else experiment=precise), 3 seeds, the budgets of
    :data:`ND_BUDGETS`."""
    cases = []
    for p, m in ND_BUDGETS.items():
        preset = ND_RECIPES.get(p, "precise")
        cases.append(Case(f"{p}_precise", p, preset, [f"experiment={preset}"], minutes=m))
    cases.append(Case("kuramoto_sivashinsky_short", "kuramoto_sivashinsky",
                      "kuramoto_sivashinsky_precise, t in [0, 0.1]",
                      ["experiment=kuramoto_sivashinsky_precise", "pde.t_max=0.1"],
                      minutes=ND_BUDGETS["kuramoto_sivashinsky"], published=KS_SHORT_PUBLISHED))
    return cases


# Problems on shapes (pde.geometry) and their budgets, minutes per run (the targets of the
# geometry issue): each with experiment=precise.
GEO_BUDGETS = {"laplace_lshape": 10.0, "poisson_holes": 5.0, "heat_annulus": 5.0,
               "cylinder": 30.0}
GEO_RECIPES: Dict[str, str] = {"cylinder": "cylinder_precise"}


def geometry_suite() -> List[Case]:
    """Problems on shapes: their recipe (:data:`GEO_RECIPES`, else experiment=precise), 3
    seeds, the budgets of :data:`GEO_BUDGETS`."""
    return [Case(f"{p}_precise", p, GEO_RECIPES.get(p, "precise"),
                 [f"experiment={GEO_RECIPES.get(p, 'precise')}"], minutes=m)
            for p, m in GEO_BUDGETS.items()]


# The hard cases of the literature (Krishnapriyan et al., NeurIPS 2021; Rathore et al., ICML
# 2024) with their published figures, and the Gauss-Newton and attention recipes, 15 minutes a
# run (docs/accuracy.md "Hard cases" and "Levenberg-Marquardt").
HARD_MINUTES = 15.0
HARD = [
    ("convection_c50", "advection", "convection_precise", [],
     ("7.2e-3", "beta = 50: float64 PINN, Xu et al. 2025 ('FP64 is all you need', Table 1); "
                "PINNMamba 1.97e-2; beta = 40: NysNewton-CG 1.94e-3, Rathore et al. 2024 "
                "(ICML, Table 2)")),
    ("convection_c30", "advection", "convection_precise", ["pde.params.c=30"],
     ("2.02e-2", "beta = 30: curriculum regularization, Krishnapriyan et al. 2021 (NeurIPS, "
                 "Table 1); plain PINN 8.97e-1")),
    ("reaction_rho5", "reaction", "reaction_precise", [],
     ("9.92e-3", "rho = 5: NysNewton-CG, Rathore et al. 2024 (ICML, Table 2); PINNMamba "
                 "2.13e-2; seq2seq 7.06e-2, Krishnapriyan et al. 2021 (Table E.2)")),
]


# Burgers and Allen-Cahn with the Gauss-Newton and attention recipes (docs/methods.md).
METHODS = [
    ("burgers_lm", "burgers", "precise", ["optim.qn=lm", "sampler.resample_every=50"]),
    ("allen_cahn_lm", "allen_cahn", "allen_cahn_precise",
     ["optim.qn=lm", "sampler.n_interior=2000", "sampler.resample_every=25"]),
    ("burgers_vrba", "burgers", "precise", ["loss.attention=vrba", "loss.weights.ic=100"]),
    ("allen_cahn_rba", "allen_cahn", "allen_cahn_precise",
     ["loss.attention=rba", "loss.weights.ic=100"]),
]


def hard_suite() -> List[Case]:
    """The hard cases of :data:`HARD` and the recipes of :data:`METHODS`: 3 seeds, 15 minutes
    a run."""
    cases = [Case(name, problem, preset, [f"experiment={preset}", *extra], minutes=HARD_MINUTES,
                  published=published)
             for name, problem, preset, extra, published in HARD]
    cases += [Case(name, problem, f"{preset} + {' '.join(extra)}",
                   [f"experiment={preset}", *extra], minutes=HARD_MINUTES)
              for name, problem, preset, extra in METHODS]
    return cases


def published_of(case: Case) -> Tuple[str, str]:
    """(value, source) of the published figure a case is compared with."""
    return case.published or PUBLISHED.get(case.problem, ("-", ""))


def quick_suite() -> List[Case]:
    """A few minutes on 2 CPU cores: the default recipe on three problems, one seed."""
    return [Case(f"{p}_default", p, "default", [], seeds=[0])
            for p in ("burgers", "heat", "advection")]


# -- running ------------------------------------------------------------------------------

def run_dir_of(case: Case, seed: int, out: Path) -> Path:
    return out / case.name / f"seed{seed}"


def run_one(case: Case, seed: int, out: Path, extra: Sequence[str] = (),
            python: str = sys.executable, log=print) -> Path:
    """Train one seed of ``case`` into ``out/<case>/seed<s>``; returns the run folder. A run
    that exists with a metrics.json already is kept (a suite can be resumed)."""
    run_dir = run_dir_of(case, seed, out)
    if (run_dir / "metrics.json").is_file():
        log(f"  {case.name} seed {seed}: kept ({run_dir})")
        return run_dir
    cmd = [python, "-m", "pinn.train", *case.command(seed, extra),
           f"hydra.run.dir={run_dir}", "trainer.progress=false"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "accuracy_error.txt").write_text(proc.stderr)
        log(f"  {case.name} seed {seed}: FAILED (exit {proc.returncode}), see "
            f"{run_dir / 'accuracy_error.txt'}")
    else:
        log(f"  {case.name} seed {seed}: {time.perf_counter() - t0:.0f} s")
    return run_dir


def run_case(case: Case, out: Path, extra: Sequence[str] = (), python: str = sys.executable,
             log=print) -> List[Path]:
    """Train every seed of ``case``, one after another; returns the run folders."""
    return [run_one(case, seed, out, extra, python, log) for seed in case.seeds]


def run_suite(suite: Sequence[Case], out: Path, extra: Sequence[str] = (), jobs: int = 1,
              log=print) -> List[List[Path]]:
    """Every (case, seed) of ``suite``, ``jobs`` at a time (each run then gets
    ``trainer.num_threads`` = cores // jobs, so that they do not oversubscribe the CPU);
    returns the run folders per case."""
    if jobs <= 1:
        return [run_case(c, out, extra, log=log) for c in suite]
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    if not any(e.startswith("trainer.num_threads=") for e in extra):
        extra = [*extra, f"trainer.num_threads={threads}"]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [[pool.submit(run_one, c, s, out, extra, sys.executable, log) for s in c.seeds]
                   for c in suite]
        return [[f.result() for f in fs] for fs in futures]


def _parameters(run_dir: Path) -> Optional[int]:
    """Trainable parameters of the run's network (None if it cannot be loaded)."""
    try:
        from pinn.api import load_run
        model, _ = load_run(run_dir)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # noqa: BLE001 - a missing or unreadable checkpoint: no count
        return None


def summarize(case: Case, folders: Sequence[Path]) -> Dict[str, object]:
    """One table row from the run folders' metrics.json."""
    metrics = []
    for d in folders:
        f = d / "metrics.json"
        if f.is_file():
            metrics.append(json.loads(f.read_text()))
    row: Dict[str, object] = {"case": case.name, "problem": case.problem, "recipe": case.recipe,
                              "seeds": list(case.seeds), "completed": len(metrics),
                              "command": "python -m pinn.train " + " ".join(case.command(
                                  "<s>" if len(case.seeds) != 1 else case.seeds[0])),
                              "published": published_of(case)[0],
                              "published_source": published_of(case)[1],
                              "runs": [str(d) for d in folders]}
    if not metrics:
        return row
    errors: Dict[str, List[float]] = {}
    for m in metrics:
        for k, v in m.items():
            if k.startswith("error/l2_rel/"):
                errors.setdefault(k.split("/", 2)[2], []).append(float(v))
            elif k.startswith("error/rel/"):  # a quantity against its published value
                errors.setdefault(k.split("/", 2)[2] + " (rel. error)", []).append(float(v))
    row["l2_rel"] = {k: {"median": statistics.median(v), "worst": max(v), "values": v}
                     for k, v in errors.items()}
    row["wall_time_s"] = statistics.median(float(m["wall_time_s"]) for m in metrics)
    row["compile_time_s"] = statistics.median(float(m.get("compile_time_s", 0.0))
                                              for m in metrics)
    row["iterations"] = int(statistics.median(int(m["steps"]) for m in metrics))
    row["stopped_early"] = sum(1 for m in metrics if "stopped_early" in m)
    row["parameters"] = _parameters(folders[0])
    return row


def markdown(rows: Sequence[Dict[str, object]], title: str) -> str:
    lines = [title, "",
             "| problem | recipe | seeds | relative L2 median (worst) | published best | "
             "wall s (compile s) | iterations | parameters |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "l2_rel" in r:
            err = "; ".join(f"{k} {v['median']:.2e} ({v['worst']:.2e})"
                            for k, v in r["l2_rel"].items())
            wall = f"{r['wall_time_s']:.0f} ({r['compile_time_s']:.0f})"
            its, params = str(r["iterations"]), str(r["parameters"])
        else:
            err, wall, its, params = "failed", "-", "-", "-"
        seeds = ",".join(map(str, r["seeds"]))
        if r["completed"] != len(r["seeds"]):
            seeds += f" ({r['completed']} completed)"
        pub = r["published"] + (f" ({r['published_source']})" if r["published_source"] else "")
        cells = [r["problem"], r["recipe"], seeds, err, pub, wall, its, params]
        # A "|" inside a cell (e.g. |h|) would end it: escaped.
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    from pinn.device import cpu_name
    import torch
    return (f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from pinn.cli import OneLineParser

    p = OneLineParser(prog="python -m pinn.accuracy", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the quick suite (a few minutes)")
    p.add_argument("--nd", action="store_true", help="the problems in 2-D and 3-D, the "
                   "Navier-Stokes systems, KdV and Kuramoto-Sivashinsky (about 4 hours)")
    p.add_argument("--geometry", action="store_true", help="the problems on shapes (L-shape, "
                   "holes, annulus, the cylinder benchmark; about 3 hours)")
    p.add_argument("--hard", action="store_true", help="the hard cases (convection beta = "
                   "30 and 50, reaction rho = 5) and Burgers and Allen-Cahn with "
                   "Levenberg-Marquardt and vRBA (about 5 hours)")
    p.add_argument("--cases", default=None, help="comma-separated case names (see --list)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds for every case")
    p.add_argument("--out", default=None, help="folder of the runs and the table "
                                               "(default outputs/accuracy/<date>/<time>)")
    p.add_argument("--override", nargs="*", default=[],
                   help="key=value added to every run (e.g. device=cuda)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time, each with cores // jobs torch threads (default 1)")
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs={args.jobs} is not allowed: an integer >= 1")
    suite = (quick_suite() if args.quick else nd_suite() if args.nd
             else geometry_suite() if args.geometry else hard_suite() if args.hard
             else full_suite())
    known = {c.name: c for c in [*full_suite(), *quick_suite(), *nd_suite(), *geometry_suite(),
                                 *hard_suite()]}
    if args.cases:
        names = [n.strip() for n in args.cases.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            p.error(f"--cases: unknown case {unknown[0]!r}: one of {', '.join(known)}")
        suite = [known[n] for n in names]
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            p.error(f"--seeds={args.seeds!r} is not allowed: comma-separated integers")
        for c in suite:
            c.seeds = seeds
    if args.list:
        width = max(len(c.name) for c in suite)
        for c in suite:
            budget = f"{c.minutes:g} min" if c.minutes else "to the end"
            print(f"{c.name:<{width}} seeds {','.join(map(str, c.seeds)):<6} {budget:<11} "
                  f"python -m pinn.train {' '.join(c.command('<s>'))}")
        return 0
    from pinn.cli import CommandLineError, check_overrides
    import pinn.train  # noqa: F401  (registers the schema)
    for c in suite:  # every command line composes before anything runs
        try:
            check_overrides("train", c.command(c.seeds[0], args.override))
        except CommandLineError as e:
            p.error(f"case {c.name}: {e}")
    out = Path(args.out or Path("outputs") / "accuracy" / time.strftime("%Y-%m-%d/%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"accuracy suite: {len(suite)} case(s) into {out}", flush=True)
    folders = run_suite(suite, out, args.override, jobs=args.jobs,
                        log=lambda s: print(s, flush=True))
    rows = [summarize(c, f) for c, f in zip(suite, folders)]
    which = ("cases " + args.cases if args.cases else "quick suite" if args.quick
             else "nd suite" if args.nd else "geometry suite" if args.geometry
             else "hard cases" if args.hard else "full suite")
    title = f"pinn accuracy ({which}), {machine()}"
    if args.jobs > 1:
        title += (f"; {args.jobs} runs at a time, "
                  f"{max(1, (os.cpu_count() or 1) // args.jobs)} torch thread(s) each")
    table = markdown(rows, title)
    (out / "accuracy.md").write_text(table + "\n")
    (out / "accuracy.json").write_text(json.dumps({"machine": machine(), "rows": rows},
                                                  indent=1) + "\n")
    print(table)
    print(f"\ntable: {out / 'accuracy.md'}; rows: {out / 'accuracy.json'}")
    return 0 if all(r["completed"] == len(r["seeds"]) for r in rows) else 1


if __name__ == "__main__":
    from pinn.cli import quiet_closed_pipe

    with quiet_closed_pipe():
        sys.exit(main())
