"""``python -m pinn.report <sweep folder>``: every trial or job of a sweep, ranked, with figures.

Works on a search (``hydra/sweeper=optuna``: the folder holds ``study.yaml`` and the study) and
on a grid multirun (numbered job folders). Written into ``<folder>/report`` (or ``--out``):

- ``report.md`` and ``report.csv``: rank, trial, status, objective, steps, wall time, then the
  hyperparameters; completed trials first (best first), then pruned, then failed ones;
- ``history.png``: the objective of each trial in order, and the best so far;
- ``importances.png``: each hyperparameter's importance (Optuna's PED-ANOVA evaluator,
  Watanabe et al. 2023, which needs no scikit-learn);
- ``params.png``: the objective against each hyperparameter.

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
from typing import Dict, List, Optional, Sequence

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
    """(rows, metric, direction) of the study described by ``folder/study.yaml``."""
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
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = t.state.name.lower()
        status = {"complete": "completed", "fail": "failed"}.get(state, state)
        if t.user_attrs.get(STALE):
            status = "failed (killed; run again)"
        run_dir = Path(t.user_attrs.get("run_dir", folder / str(t.number)))
        if not run_dir.is_absolute() and not run_dir.exists():
            run_dir = folder / str(t.number)
        m = _metrics(run_dir) or {}
        value = t.value if t.value is not None else _finite(m.get(info["metric"]))
        rows.append(Row(str(t.number), status, _finite(value), dict(t.params),
                        m.get("steps", t.user_attrs.get("steps")),
                        m.get("wall_time_s", t.user_attrs.get("wall_time_s")),
                        str(run_dir), dict(t.intermediate_values), t.number))
    return rows, info["metric"], info["direction"]


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


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4e}" if (abs(v) < 1e-3 or abs(v) >= 1e4) and v != 0 else f"{v:.4g}"
    return str(v).replace("|", "\\|")


def write_tables(rows: List[Row], metric: str, out: Path, title: str) -> str:
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
    counts = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    steps = sum(r.steps or 0 for r in rows)
    lines = [f"# {title}", "",
             f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
             + f"; {steps} training steps in all", "",
             "| " + " | ".join(_cell(h) for h in head) + " |",
             "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
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


def write_figures(rows: List[Row], metric: str, direction: str, out: Path) -> List[str]:
    """history.png, importances.png, params.png; returns notes on figures not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = []
    by_number = sorted(rows, key=lambda r: r.number)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    best, best_curve = None, []
    for r in by_number:
        if r.status == "completed" and r.objective is not None:
            better = best is None or (r.objective > best if direction == "maximize"
                                      else r.objective < best)
            best = r.objective if better else best
        best_curve.append(best)
    colors = {"completed": "tab:blue", "pruned": "tab:orange"}
    for status in ("completed", "pruned"):
        pts = [(r.number, r.objective) for r in by_number
               if r.status == status and r.objective is not None]
        if pts:
            ax.scatter(*zip(*pts), s=18, color=colors[status], label=status)
    ax.step([r.number for r in by_number], [float("nan") if b is None else b
                                            for b in best_curve], where="post",
            color="k", lw=1, label="best so far")
    ax.set_xlabel("trial")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    positive = [r.objective for r in rows if r.objective is not None and r.objective > 0]
    if positive and len(positive) == len([r for r in rows if r.objective is not None]):
        ax.set_yscale("log")
    ax.legend()
    ax.set_title("optimization history")
    fig.tight_layout()
    fig.savefig(out / "history.png", dpi=110)
    plt.close(fig)

    try:
        imp = importances(rows, direction)
        fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(imp)))
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="tab:blue")
        ax.set_xlabel("importance (PED-ANOVA)")
        ax.set_title(f"hyperparameter importances for {metric}")
        fig.tight_layout()
        fig.savefig(out / "importances.png", dpi=110)
        plt.close(fig)
    except (ReportError, RuntimeError, ValueError, ImportError) as e:
        notes.append(f"importances.png not drawn: {e}")

    params = sorted({k for r in rows for k in r.params})
    if params:
        fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 3.2),
                                 squeeze=False)
        for ax, k in zip(axes[0], params):
            for status in ("completed", "pruned"):
                pts = [(r.params[k], r.objective) for r in rows if r.status == status
                       and r.objective is not None and k in r.params]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                if not all(isinstance(x, (int, float)) for x in xs):
                    xs = [str(x) for x in xs]
                ax.scatter(xs, ys, s=18, color=colors[status], label=status)
            ax.set_xlabel(k)
            if positive:
                ax.set_yscale("log")
            numeric = [r.params[k] for r in rows if isinstance(r.params.get(k), (int, float))]
            if numeric and min(numeric) > 0 and max(numeric) / min(numeric) > 100:
                ax.set_xscale("log")
        axes[0][0].set_ylabel(metric)
        axes[0][0].legend()
        fig.tight_layout()
        fig.savefig(out / "params.png", dpi=110)
        plt.close(fig)
    return notes


def build_report(folder: Path, out: Optional[Path] = None, metric: Optional[str] = None,
                 direction: Optional[str] = None) -> str:
    """Write the report of ``folder`` into ``out`` (default ``folder/report``); returns the
    Markdown table."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder")
    if (folder / "study.yaml").is_file():
        rows, study_metric, study_direction = study_rows(folder)
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
    notes = write_figures(rows, metric, direction, out)
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
