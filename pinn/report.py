"""``python -m pinn.report <sweep folder>``: every trial or job of a sweep, ranked, with figures.

Works on a search (``hydra/sweeper=optuna``: the folder holds ``study.yaml`` and the study) and
on a grid multirun (numbered job folders). Written into ``<folder>/report`` (or ``--out``):

- ``report.md`` and ``report.csv``: rank, trial, status, objective, steps, wall time, then the
  hyperparameters; completed trials first (best first), then pruned, then failed ones; the
  Markdown table (also printed) writes each column in one number format, the CSV file every
  number in full;
- ``history.png``: the objective of each trial in order, and the best so far;
- ``importances.png``: each hyperparameter's importance (Optuna's PED-ANOVA evaluator,
  Watanabe et al. 2023, which needs no scikit-learn);
- ``params.png``: the objective against each hyperparameter; a log axis for a parameter
  searched on a log scale (``tag(log, ...)``), and for the objective when it spans a decade.

    python -m pinn.report outputs/sweeps/burgers-1a2b3c4d
    python -m pinn.report outputs/multirun/2026-12-01/10-00-00 --metric loss/total
"""
from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import yaml

STATUS_ORDER = {"completed": 0, "pruned": 1, "running": 2, "failed": 3, "diverged": 3,
                "interrupted": 2, "missing": 4}


class ReportError(ValueError):
    """A folder that holds no sweep, or an option that does not fit it; one line."""


@dataclass
class Row:
    """One trial (a search) or job (a grid multirun)."""

    name: str
    status: str
    objective: Optional[float]
    params: Dict[str, object]
    steps: Optional[int] = None
    wall_time_s: Optional[float] = None
    run_dir: Optional[str] = None
    history: Dict[int, float] = field(default_factory=dict)  # step -> intermediate objective
    number: int = 0


def _number(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _metrics(run_dir: Path) -> Optional[dict]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _jobs(folder: Path) -> List[Path]:
    """Job folders: numbered sub-folders with Hydra's ``.hydra/overrides.yaml``."""
    jobs = [d for d in folder.iterdir()
            if d.is_dir() and (d / ".hydra" / "overrides.yaml").is_file()]
    return sorted(jobs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit()
                                       else 0, d.name))


def _finite(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else None


def study_rows(folder: Path) -> tuple:
    """(rows, metric, direction, scales) of the study described by ``folder/study.yaml``;
    ``scales``: each numeric parameter's sampling scale, ``log`` or ``linear``."""
    import optuna

    from pinn.sweep.study import STALE, storage_for

    info = yaml.safe_load((folder / "study.yaml").read_text())
    storage = info["storage"] if "://" in str(info["storage"]) else None
    path = None if storage else Path(info["storage"])
    if path is not None and not path.is_absolute() and not path.exists():
        path = folder / path.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=info["study_name"],
                              storage=storage or storage_for(str(path), str(folder)))
    rows, scales = [], {}
    for t in study.get_trials(deepcopy=False):
        state = t.state.name.lower()
        status = {"complete": "completed", "fail": "failed"}.get(state, state)
        if t.user_attrs.get(STALE) and status == "failed":
            status = "failed (killed; run again)"
        for k, d in t.distributions.items():
            if hasattr(d, "log"):  # float and int distributions; categorical ones have none
                scales[k] = "log" if d.log else "linear"
        run_dir = Path(t.user_attrs.get("run_dir", folder / str(t.number)))
        if not run_dir.is_absolute() and not run_dir.exists():
            run_dir = folder / str(t.number)
        m = _metrics(run_dir) or {}
        value = t.value if t.value is not None else _finite(m.get(info["metric"]))
        rows.append(Row(str(t.number), status, _finite(value), dict(t.params),
                        m.get("steps", t.user_attrs.get("steps")),
                        m.get("wall_time_s", t.user_attrs.get("wall_time_s")),
                        str(run_dir), dict(t.intermediate_values), t.number))
    return rows, info["metric"], info["direction"], scales


def grid_rows(folder: Path, metric: Optional[str]) -> tuple:
    """(rows, metric) of a grid multirun: the parameters are the overrides that vary."""
    jobs = _jobs(folder)
    if not jobs:
        raise ReportError(f"{folder} holds no sweep: neither study.yaml nor job folders with "
                          ".hydra/overrides.yaml")
    overrides = []
    for d in jobs:
        lines = yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) or []
        overrides.append(dict(line.split("=", 1) for line in lines if "=" in line
                              and not line.startswith("hydra")))
    keys = sorted({k for o in overrides for k in o})
    varying = [k for k in keys if len({o.get(k) for o in overrides}) > 1]
    metrics = [_metrics(d) for d in jobs]
    if metric is None:
        present = [m for m in metrics if m]
        metric = next((k for k in (present[0] if present else {})
                       if k.startswith("error/l2_rel/")), "loss/total")
    if metrics and all(m is not None and metric not in m for m in metrics):
        raise ReportError(f"--metric {metric}: no job of {folder} reports it")
    rows = []
    for i, (d, o, m) in enumerate(zip(jobs, overrides, metrics)):
        m = m or {}
        rows.append(Row(d.name, m.get("status", "missing"), _finite(m.get(metric)),
                        {k: _number(o[k]) for k in varying if k in o}, m.get("steps"),
                        m.get("wall_time_s"), str(d), number=i))
    return rows, metric


def rank(rows: List[Row], direction: str) -> List[Row]:
    sign = -1.0 if direction == "maximize" else 1.0

    def key(r: Row):
        order = STATUS_ORDER.get(r.status.split(" ")[0], 3)
        value = sign * r.objective if r.objective is not None else math.inf
        return order, value, r.number

    return sorted(rows, key=key)


def decades(values: Sequence[object]) -> float:
    """How many decades the numbers in ``values`` span (log10 of largest / smallest); 0 unless
    there are numbers and all are finite and positive."""
    numbers = [float(v) for v in values if _is_number(v)]
    if not numbers or not all(math.isfinite(v) and v > 0 for v in numbers):
        return 0.0
    return math.log10(max(numbers) / min(numbers))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(v) -> str:
    return "-" if v is None else str(v).replace("|", "\\|")


def column_format(values: Sequence[object]) -> Callable[[object], str]:
    """One format for a whole column of the table: integers as integers; real numbers with
    4 significant digits, in scientific notation when any is small (< 0.01) or large
    (>= 10^4) or the column spans two decades or more, else with the decimals that give its
    largest value 4 significant digits; anything else as text. Empty cells are ``-``."""
    present = [v for v in values if v is not None]
    if not present or not all(_is_number(v) for v in present):
        return _text
    if all(isinstance(v, int) for v in present):
        return lambda v: "-" if v is None else str(v)
    sizes = [abs(float(v)) for v in present if math.isfinite(float(v)) and v != 0]
    if sizes and (min(sizes) < 1e-2 or max(sizes) >= 1e4 or decades(sizes) >= 2):
        return lambda v: "-" if v is None else f"{float(v):.3e}"
    digits = max(0, 3 - math.floor(math.log10(max(sizes)))) if sizes else 1
    return lambda v: "-" if v is None else f"{float(v):.{digits}f}"


def _wall_time(v) -> str:
    return "-" if v is None else f"{float(v):.1f}"


def write_tables(rows: List[Row], metric: str, out: Path, title: str) -> str:
    """report.csv (every number in full precision) and the Markdown table (one format per
    column, see :func:`column_format`), which is returned."""
    params = sorted({k for r in rows for k in r.params})
    head = ["rank", "trial", "status", metric, "steps", "wall time (s)", *params]
    body = []
    for i, r in enumerate(rows, 1):
        body.append([i, r.name, r.status, r.objective, r.steps, r.wall_time_s,
                     *(r.params.get(k) for k in params)])
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows([["" if c is None else c for c in row] for row in body])
    columns = list(zip(*body)) if body else [()] * len(head)
    formats = [_text, _text, _text, *(column_format(c) for c in columns[3:])]
    formats[5] = _wall_time
    counts = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    steps = sum(r.steps or 0 for r in rows)
    lines = [f"# {title}", "",
             f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
             + f"; {steps} training steps in all", "",
             "| " + " | ".join(_text(h) for h in head) + " |",
             "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(f(c) for f, c in zip(formats, row)) + " |" for row in body]
    text = "\n".join(lines) + "\n"
    return text


def importances(rows: List[Row], direction: str) -> Dict[str, float]:
    """PED-ANOVA importances of the hyperparameters over the completed trials (Optuna's
    evaluator, on an in-memory study built from the rows)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    done = [r for r in rows if r.status == "completed" and r.objective is not None]
    keys = sorted({k for r in done for k in r.params})
    dists = {}
    for k in keys:
        values = [r.params.get(k) for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
                and min(values) < max(values):
            dists[k] = FloatDistribution(float(min(values)), float(max(values)))
        else:
            dists[k] = CategoricalDistribution(sorted({str(v) for v in values}))
    keys = [k for k in keys if not (isinstance(dists[k], CategoricalDistribution)
                                    and len(dists[k].choices) < 2)]
    if len(done) < 2 or not keys:
        raise ReportError("fewer than two completed trials, or no parameter that varies")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction)
    for r in done:
        params = {k: (float(r.params[k]) if isinstance(dists[k], FloatDistribution)
                      else str(r.params[k])) for k in keys}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in keys}, value=r.objective))
    return optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())


COLORS = {"completed": "tab:blue", "pruned": "tab:orange"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _objectives(rows: List[Row]) -> List[float]:
    return [r.objective for r in rows if r.objective is not None]


def history_figure(rows: List[Row], metric: str, direction: str):
    """Each trial's objective in order and the best so far; a log axis when the objective
    spans a decade or more."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    by_number = sorted(rows, key=lambda r: r.number)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    best, best_curve = None, []
    for r in by_number:
        if r.status == "completed" and r.objective is not None:
            better = best is None or (r.objective > best if direction == "maximize"
                                      else r.objective < best)
            best = r.objective if better else best
        best_curve.append(best)
    for status in ("completed", "pruned"):
        pts = [(r.number, r.objective) for r in by_number
               if r.status == status and r.objective is not None]
        if pts:
            ax.scatter(*zip(*pts), s=18, color=COLORS[status], label=status)
    ax.step([r.number for r in by_number], [float("nan") if b is None else b
                                            for b in best_curve], where="post",
            color="k", lw=1, label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    if decades(_objectives(rows)) >= 1:
        ax.set_yscale("log")
    ax.legend()
    ax.set_title("optimization history")
    fig.tight_layout()
    return fig


def importances_figure(imp: Dict[str, float], metric: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(imp)))
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (PED-ANOVA)")
    ax.set_title(f"hyperparameter importances for {metric}")
    fig.tight_layout()
    return fig


def params_figure(rows: List[Row], metric: str, scales: Optional[Dict[str, str]] = None):
    """The objective against each parameter, one panel each (``None`` without parameters).

    A parameter's axis is logarithmic when its search space says so (``scales[key] ==
    "log"``: ``tag(log, ...)``); without a declared scale (categorical choices, a grid) when
    its values span two decades or more. The objective's axis is logarithmic when it spans a
    decade or more.
    """
    scales = scales or {}
    params = sorted({k for r in rows for k in r.params})
    if not params:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 3.2), squeeze=False)
    log_objective = decades(_objectives(rows)) >= 1
    for ax, k in zip(axes[0], params):
        for status in ("completed", "pruned"):
            pts = [(r.params[k], r.objective) for r in rows if r.status == status
                   and r.objective is not None and k in r.params]
            if not pts:
                continue
            xs, ys = zip(*pts)
            if not all(_is_number(x) for x in xs):
                xs = [str(x) for x in xs]
            ax.scatter(xs, ys, s=18, color=COLORS[status], label=status)
        ax.set_xlabel(k)
        if log_objective:
            ax.set_yscale("log")
        values = [r.params.get(k) for r in rows if k in r.params]
        if all(_is_number(v) for v in values) and (
                scales.get(k) == "log" if k in scales else decades(values) >= 2):
            ax.set_xscale("log")
            # Within a decade matplotlib labels the minor ticks too: slanted, they stay apart.
            ax.tick_params(axis="x", which="both", labelrotation=40)
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def write_figures(rows: List[Row], metric: str, direction: str, out: Path,
                  scales: Optional[Dict[str, str]] = None) -> List[str]:
    """history.png, importances.png, params.png; returns notes on figures not drawn."""
    plt = _pyplot()
    notes = []
    figures = {"history.png": history_figure(rows, metric, direction)}
    try:
        figures["importances.png"] = importances_figure(importances(rows, direction), metric)
    except (ReportError, RuntimeError, ValueError, ImportError) as e:
        notes.append(f"importances.png not drawn: {e}")
    figures["params.png"] = params_figure(rows, metric, scales)
    for name, fig in figures.items():
        if fig is not None:
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
    return notes


def build_report(folder: Path, out: Optional[Path] = None, metric: Optional[str] = None,
                 direction: Optional[str] = None) -> str:
    """Write the report of ``folder`` into ``out`` (default ``folder/report``); returns the
    Markdown table."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder")
    scales: Dict[str, str] = {}
    if (folder / "study.yaml").is_file():
        rows, study_metric, study_direction, scales = study_rows(folder)
        if metric is not None and metric != study_metric:
            raise ReportError(f"--metric {metric}: the study was searched on {study_metric}")
        metric, direction = study_metric, direction or study_direction
        title = f"Study {yaml.safe_load((folder / 'study.yaml').read_text())['study_name']}: " \
                f"{direction} {metric}"
    else:
        rows, metric = grid_rows(folder, metric)
        direction = direction or "minimize"
        title = f"Multirun {folder}: {metric}"
    if not rows:
        raise ReportError(f"{folder}: the study has no trials yet")
    out = Path(out) if out is not None else folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = rank(rows, direction)
    text = write_tables(rows, metric, out, title)
    notes = write_figures(rows, metric, direction, out, scales)
    text += "".join(f"\n{n}\n" for n in notes)
    text += "\nFigures: history.png, importances.png, params.png\n"
    (out / "report.md").write_text(text)
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    from pinn.cli import OneLineParser

    p = OneLineParser(prog="python -m pinn.report", description=__doc__.split("\n")[0])
    p.add_argument("folder", help="a sweep folder (outputs/sweeps/<study> or a multirun's)")
    p.add_argument("--out", default=None, help="where to write (default <folder>/report)")
    p.add_argument("--metric", default=None, help="objective of a grid multirun (default: the "
                                                  "first relative L2 error, else loss/total)")
    p.add_argument("--direction", default=None, choices=("minimize", "maximize"))
    args = p.parse_args(argv)
    try:
        text = build_report(Path(args.folder), args.out, args.metric, args.direction)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    print(f"written: {Path(args.out) if args.out else Path(args.folder) / 'report'}")
    return 0


if __name__ == "__main__":
    from pinn.cli import quiet_closed_pipe

    with quiet_closed_pipe():
        sys.exit(main())
